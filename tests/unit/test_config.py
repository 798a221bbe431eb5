from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.config import Device, Settings


def test_defaults_need_no_servers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.database_url == f"sqlite:///{tmp_path / '.chatq/data/chatq.db'}"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path / '.chatq/data/broker.db'}"
    assert settings.uses_embedded_database and settings.uses_embedded_broker
    assert settings.model_dir == tmp_path / ".chatq/models/default"
    assert settings.api_port == 8000
    assert settings.device is Device.CPU


def test_environment_variables_with_the_prefix_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATQ_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("CHATQ_BROKER_URL", "amqp://guest:guest@rabbit:5672/")
    monkeypatch.setenv("CHATQ_WEBHOOK_RETRY_SCHEDULE_S", "[0.1, 0.5]")
    settings = Settings()
    assert settings.max_batch_size == 16
    assert settings.effective_prefetch_count == 32
    assert not settings.uses_embedded_broker
    assert settings.webhook_retry_schedule_s == [0.1, 0.5]


def test_a_bad_enum_value_fails_with_the_good_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATQ_DEVICE", "tpu")
    with pytest.raises(ValidationError, match="'cpu' or 'cuda'"):
        Settings()


def test_out_of_bounds_values_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATQ_MAX_BATCH_SIZE", "0")
    with pytest.raises(ValidationError, match="max_batch_size"):
        Settings()
