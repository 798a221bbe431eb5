"""One line for an operator when the database or the broker does not answer, instead of the
driver's traceback: which one, where (password hidden), and what to check."""

from __future__ import annotations

import socket

from shared.config import Settings


def describe_unreachable(error: BaseException, settings: Settings) -> str | None:
    """The line for ``error`` if it says the database or the broker is unreachable."""
    from kombu.exceptions import OperationalError as BrokerError
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError as DatabaseError

    if isinstance(error, DatabaseError):
        where = make_url(settings.database_url).render_as_string(hide_password=True)
        reason = str(error.orig or error).strip().splitlines()[0]
        return (
            f"the database at {where} does not answer ({reason}); is it running, and is "
            "CHATQ_DATABASE_URL right?"
        )
    if isinstance(error, BrokerError | ConnectionError | socket.timeout):
        return (
            f"the broker at {_broker_location(settings)} does not answer ({error}); is it "
            "running, and is CHATQ_BROKER_URL right?"
        )
    return None


def _broker_location(settings: Settings) -> str:
    from kombu.utils.url import maybe_sanitize_url

    from shared.messaging.broker import kombu_url

    return str(maybe_sanitize_url(kombu_url(settings)))
