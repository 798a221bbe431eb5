"""Credentials from files (``CHATQ_<NAME>_FILE``), as Docker and Kubernetes mount secrets."""

from pathlib import Path

import pytest

from shared.config import SECRET_FILE_SETTINGS, Settings


def test_each_credential_is_read_from_the_file_its_variable_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    database = tmp_path / "database_url"
    database.write_text("postgresql+psycopg://chatq:s3cret@postgres:5432/chatq\n")
    broker = tmp_path / "broker_url"
    broker.write_text("amqp://chatq:s3cret@rabbitmq:5672/\r\n")
    pii = tmp_path / "pii_secret"
    pii.write_text("0123456789abcdef")  # no newline at the end
    monkeypatch.setenv("CHATQ_DATABASE_URL_FILE", str(database))
    monkeypatch.setenv("CHATQ_BROKER_URL_FILE", str(broker))
    monkeypatch.setenv("chatq_pii_secret_file", str(pii))  # names are case-insensitive
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://chatq:s3cret@postgres:5432/chatq"
    assert settings.broker_url == "amqp://chatq:s3cret@rabbitmq:5672/"
    assert settings.pii_secret is not None
    assert settings.pii_secret.get_secret_value() == "0123456789abcdef"
    assert not settings.uses_embedded_database and not settings.uses_embedded_broker


def test_the_variable_itself_wins_over_its_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "database_url"
    secret.write_text("postgresql+psycopg://chatq:s3cret@postgres:5432/chatq\n")
    monkeypatch.setenv("CHATQ_DATABASE_URL_FILE", str(secret))
    monkeypatch.setenv("CHATQ_DATABASE_URL", "")  # how `chatq eval` asks for the embedded one
    monkeypatch.setenv("CHATQ_DATA_DIR", str(tmp_path))
    assert Settings().database_url == f"sqlite:///{tmp_path / 'chatq.db'}"


@pytest.mark.parametrize("name", SECRET_FILE_SETTINGS)
def test_a_missing_file_stops_the_process_naming_the_variable(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(f"CHATQ_{name.upper()}_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValueError, match=f"CHATQ_{name.upper()}_FILE: cannot read"):
        Settings()


def test_an_empty_file_never_falls_back_to_the_embedded_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "database_url"
    empty.write_text("\n")
    monkeypatch.setenv("CHATQ_DATABASE_URL_FILE", str(empty))
    with pytest.raises(ValueError, match=r"CHATQ_DATABASE_URL_FILE: .* is empty"):
        Settings()


def test_the_readme_documents_every_file_variable() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert [n for n in SECRET_FILE_SETTINGS if f"CHATQ_{n.upper()}_FILE" not in readme] == []
