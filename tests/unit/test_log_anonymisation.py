"""Log lines never carry a customer's personal data: chatq's own events and library records."""

from __future__ import annotations

import json
import logging

import pytest

from shared.config import LogFormat, Settings
from shared.logs import get_logger
from tests.integration.test_database_error_logs import chatq_logging

PHONE = "13812345678"
EMAIL = "wang.fang@example.com"


@pytest.mark.parametrize("log_format", [LogFormat.JSON, LogFormat.CONSOLE])
def test_personal_data_in_events_and_library_records_is_anonymised(
    tmp_path: object, capsys: pytest.CaptureFixture[str], log_format: LogFormat
) -> None:
    settings = Settings(data_dir=tmp_path)  # type: ignore[arg-type]
    with chatq_logging(settings, log_format):
        get_logger("test").info("job_failed", query=f"call me on {PHONE}", note=f"mail {EMAIL}")
        logging.getLogger("celery.worker").warning("task failed for %s", EMAIL)
        try:
            raise ValueError(f"bad webhook answer for {PHONE}")
        except ValueError:
            get_logger("test").exception("delivery_failed")
    logged = capsys.readouterr().err
    assert "job_failed" in logged and "delivery_failed" in logged
    assert "task failed for" in logged
    assert PHONE not in logged and EMAIL not in logged
    assert "<PHONE_1>" in logged and "<EMAIL_1>" in logged


def test_a_library_records_exception_is_rendered_as_a_traceback(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path)  # type: ignore[arg-type]
    with chatq_logging(settings, LogFormat.JSON):
        try:
            raise ValueError("the receiver hung up")
        except ValueError:
            logging.getLogger("celery.app.trace").exception("Task %s raised", "finalize_job")
    (line,) = [json.loads(text) for text in capsys.readouterr().err.splitlines()]
    assert line["event"] == "Task finalize_job raised"
    assert "exc_info" not in line
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].endswith("ValueError: the receiver hung up")
