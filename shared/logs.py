"""Structured logging for every chatq process.

structlog renders both its own events and the standard library's (Celery, gunicorn, kombu), so
each process writes one format: a JSON object per line by default, or readable console lines.

Database errors are logged without the data they were about: engines hide statement parameters
(``shared.db.engine``), and ``redact_database_errors`` keeps the driver's details (Postgres's
DETAIL and CONTEXT lines, quoted values in its message) out of tracebacks and error strings.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from typing import Any

import structlog
from sqlalchemy.exc import StatementError
from structlog.typing import EventDict

from shared.config import LogFormat, Settings, get_settings
from shared.pii import pii_log_processor


def _service_adder(service: str) -> structlog.typing.Processor:
    def add_service(_logger: Any, _name: str, event: EventDict) -> EventDict:
        event.setdefault("service", service)
        return event

    return add_service


# Drivers whose exceptions carry the server's message, which can quote the offending value.
_DRIVER_MODULES = ("psycopg", "psycopg2", "sqlite3", "asyncpg", "pg8000")
# How SQLAlchemy's errors read as text: str() names the statement, repr() may only name the
# driver's exception class in front of its message.
_DATABASE_ERROR_TEXT = re.compile(
    r"\[SQL: |sqlalche\.me/e/|\((?:psycopg2?|sqlite3|asyncpg|pg8000)(?:\.\w+)*\)"
)
# Postgres's secondary fields (and psycopg's rendering of them) quote rows and parameters.
_DETAIL_LINE = re.compile(
    r"(?:DETAIL|CONTEXT|HINT|WHERE|LINE \d+|unnamed portal parameter)\b.*?(?=\\n|\n|'\)|$)"
)
_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\\n|\n|$)")
_QUOTED = re.compile(r'"[^"\n]*"')


def _is_driver_error(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] in _DRIVER_MODULES


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it was raised from or during, newest first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return chain


def _first_line_without_values(message: str) -> str:
    return _QUOTED.sub('"…"', message.strip().splitlines()[0] if message.strip() else "")


def describe_database_error(error: BaseException) -> str | None:
    """What a database error says, without the data it was about; None for other errors.

    The driver's first line with quoted values elided, the SQLSTATE and constraint, and the
    statement (whose parameters are placeholders).
    """
    if isinstance(error, StatementError):
        orig = error.orig
        parts = [f"({type(orig).__module__}.{type(orig).__qualname__})"] if orig else []
        parts.append(_first_line_without_values(str(orig) if orig else str(error.args[0])))
        if orig is not None:
            parts += _driver_facts(orig)
        parts.append(f"[SQL: {error.statement}]")
        return " ".join(part for part in parts if part)
    if _is_driver_error(error):
        return " ".join([_first_line_without_values(str(error)), *_driver_facts(error)])
    return None


def _driver_facts(error: BaseException) -> list[str]:
    facts = []
    if sqlstate := getattr(error, "sqlstate", None):
        facts.append(f"[sqlstate {sqlstate}]")
    diag = getattr(error, "diag", None)
    if constraint := getattr(diag, "constraint_name", None):
        facts.append(f"[constraint {constraint}]")
    return facts


def format_exception_safely(error: BaseException) -> str:
    """A traceback like Python's, with every database error's message replaced by
    ``describe_database_error``'s."""
    sections = []
    for index, link in enumerate(reversed(_chain(error))):
        if index:
            sections.append(
                "\nThe above exception was the direct cause of the following exception:\n\n"
                if link.__cause__ is not None
                else "\nDuring handling of the above exception, another exception occurred:\n\n"
            )
        if link.__traceback__ is not None:
            sections.append("Traceback (most recent call last):\n")
            sections += traceback.format_tb(link.__traceback__)
        safe = describe_database_error(link)
        if safe is None:
            sections += traceback.format_exception_only(type(link), link)
        else:
            sections.append(f"{type(link).__module__}.{type(link).__qualname__}: {safe}\n")
    return "".join(sections).rstrip("\n")


def scrub_database_error_text(text: str) -> str:
    """An error string (such as ``repr`` of a SQLAlchemy error) without the driver's details."""
    if not _DATABASE_ERROR_TEXT.search(text):
        return text
    head, marker, tail = text.partition("[SQL: ")
    head = _QUOTED.sub('"…"', _DETAIL_LINE.sub("", head))
    return _PARAMETERS.sub("[parameters hidden]", head + marker + tail)


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple):
        return exc_info[1] if len(exc_info) > 1 else None
    return sys.exc_info()[1] if exc_info else None


def redact_database_errors(_logger: Any, _name: str, event: EventDict) -> EventDict:
    """A structlog processor: database errors in an event keep their data to themselves."""
    error = _exception_of(event.get("exc_info"))
    if error is not None and any(
        describe_database_error(link) is not None for link in _chain(error)
    ):
        del event["exc_info"]
        event["exception"] = format_exception_safely(error)
    for key, value in event.items():
        if isinstance(value, str) and key != "exception":
            event[key] = scrub_database_error_text(value)
    return event


def _shared_processors(service: str) -> list[structlog.typing.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _service_adder(service),
        redact_database_errors,  # before format_exc_info renders a traceback
    ]


def _renderer(settings: Settings) -> structlog.typing.Processor:
    if settings.log_format is LogFormat.JSON:
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=False)


def _formatter(
    shared_processors: list[structlog.typing.Processor], renderer: structlog.typing.Processor
) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # a library's record (gunicorn, Celery) brings its exception as exc_info: rendered
            # here as a traceback string, not as a list of reprs (chatq's own events are
            # rendered earlier, in structlog's chain)
            structlog.processors.format_exc_info,
            # last before rendering, so no field (tracebacks included) leaves unanonymised
            pii_log_processor,
            renderer,
        ],
    )


def stdlib_formatter(service: str = "api") -> logging.Formatter:
    """chatq's format for a process that only logs through the standard library (gunicorn's
    master, configured by ``services/api/gunicorn_config.py``)."""
    return _formatter(_shared_processors(service), _renderer(get_settings()))


def configure_logging(settings: Settings, service: str) -> None:
    """Route structlog and stdlib logging through one renderer, tagged with ``service``."""
    shared_processors = _shared_processors(service)
    renderer = _renderer(settings)

    structlog.configure(
        processors=[
            *shared_processors,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(shared_processors, renderer))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())
    # Libraries that narrate every poll or HTTP call drown the events that matter.
    for noisy in ("httpx", "httpcore", "urllib3", "amqp", "kombu", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def job_context(job_id: object, session_id: object | None = None) -> dict[str, str]:
    """The fields that tie a log line to a job (and its session, when it has one): bind them
    with ``structlog.contextvars`` around the work on one job."""
    context = {"job_id": str(job_id)}
    if session_id is not None:
        context["session_id"] = str(session_id)
    return context


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
