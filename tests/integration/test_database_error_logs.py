"""Database errors reach the logs without the data they were about (issue 8, hole 9): statement
parameters are hidden by the engines, and the driver's own details (Postgres's DETAIL lines,
values it quotes) are kept out of tracebacks and error strings, on both backends and in both log
formats. What went wrong stays readable: the error class, the SQLSTATE, the statement."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.config import LogFormat, Settings
from shared.db.engine import session_scope
from shared.logs import configure_logging, get_logger
from tests.conftest import NamespaceFactory, backend_env, prepare_backend, settings_from_env


@contextmanager
def chatq_logging(settings: Settings, log_format: LogFormat) -> Iterator[None]:
    """chatq's logging, as a process configures it, to the current stderr; put back afterwards.
    (Entered in the test's body: pytest's per-phase handlers are then the ones put back.)"""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_config = structlog.get_config()
    configure_logging(settings.model_copy(update={"log_format": log_format}), "test")
    try:
        yield
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_config)


def fail_with(settings: Settings, statements: list[str], secret: str) -> DBAPIError:
    """The database error that ``statements`` (run with ``:secret`` bound) end in."""
    with pytest.raises(DBAPIError) as caught, session_scope(settings.database_url) as session:
        for statement in statements:
            session.execute(text(statement), {"secret": secret})
    return caught.value


def log_it_every_way(settings: Settings, error: DBAPIError, log_format: LogFormat) -> None:
    """As chatq's own code logs errors, and as a library (Celery) does through the standard
    library's logging."""
    log = get_logger("chatq.test")
    with chatq_logging(settings, log_format):
        try:
            raise RuntimeError("storing the result failed") from error
        except RuntimeError as wrapped:
            log.exception("unhandled_error", error=repr(wrapped.__cause__))
            log.warning("answer_cache_store_failed", error=repr(error))
            logging.getLogger("celery.app.trace").exception("Task finalize_job raised")


UNIQUE_VIOLATION = [
    "CREATE TEMPORARY TABLE leak_probe (secret TEXT PRIMARY KEY)",
    "INSERT INTO leak_probe VALUES (:secret)",
    "INSERT INTO leak_probe VALUES (:secret)",
]


@pytest.mark.parametrize("log_format", list(LogFormat))
def test_a_unique_violation_is_logged_without_the_value(
    backend_settings: Settings, capsys: pytest.CaptureFixture[str], log_format: LogFormat
) -> None:
    secret = f"customer-text-{uuid.uuid4().hex}"
    error = fail_with(backend_settings, UNIQUE_VIOLATION, secret)
    assert secret in str(error.orig) or "UNIQUE" in str(error.orig)  # the driver does say it
    assert "[SQL parameters hidden" in str(error)  # the engine never adds the parameters
    log_it_every_way(backend_settings, error, log_format)
    logged = capsys.readouterr().err
    assert "IntegrityError" in logged
    assert "INSERT INTO leak_probe" in logged  # the statement, with placeholders only
    assert logged.count("Traceback") >= 2
    assert secret not in logged


@pytest.fixture
def postgres_settings(tmp_path: Path, server_namespace_factory: NamespaceFactory) -> Settings:
    """Postgres only: SQLite casts anything to an integer without complaint."""
    settings = settings_from_env(backend_env("servers", tmp_path, server_namespace_factory))
    prepare_backend(settings)
    return settings


@pytest.mark.parametrize("log_format", list(LogFormat))
def test_a_value_postgres_quotes_in_its_message_is_not_logged(
    postgres_settings: Settings, capsys: pytest.CaptureFixture[str], log_format: LogFormat
) -> None:
    backend_settings = postgres_settings
    secret = f"customer-text-{uuid.uuid4().hex}"
    error = fail_with(backend_settings, ["SELECT CAST(:secret AS INTEGER)"], secret)
    assert secret in str(error)  # the message itself quotes the value
    log_it_every_way(backend_settings, error, log_format)
    logged = capsys.readouterr().err
    assert "DataError" in logged and "22P02" in logged
    assert secret not in logged
