"""gunicorn worker classes for the API: gunicorn's own refusals in the API's error shape.

gunicorn answers the requests it refuses before Flask sees them (400 bad request line, 414 URI
too long, 431 header fields too large, 501 unsupported transfer coding, …) with an HTML page,
from ``Worker.handle_error`` through ``gunicorn.util.write_error``, which has no hook. These
workers replace that one function in their own process, so every answer of the API, gunicorn's
included, is ``application/problem+json`` (tests/e2e/test_serving.py checks it against the
installed gunicorn).

``GeventApiWorker`` is the default (``CHATQ_API_WORKER=gevent``): a greenlet per connection, so
long-polls and clients that trickle their headers hold no thread, and gunicorn's keep-alive
timeout bounds how long the request line and headers may take. ``ThreadApiWorker`` is gthread.

gunicorn's master imports this module before it forks: it must not import the application.
psycopg has to be imported after gevent patches ``select``, or its waits (LISTEN, queries)
block every greenlet of the process instead of yielding.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gunicorn import util
from gunicorn.glogging import Logger
from gunicorn.workers.ggevent import GeventWorker
from gunicorn.workers.gthread import ThreadWorker

# statuses gunicorn answers itself (gunicorn/workers/base.py, handle_error)
_REFUSAL_TITLES = {
    400: "Bad request",
    403: "Forbidden",
    414: "URI too long",
    417: "Expectation failed",
    431: "Request header fields too large",
    500: "Internal server error",
    501: "Not implemented",
}


def _slug(reason: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", reason.lower()).strip("-") or "error"


def refusal_problem(status: int, reason: str, detail: str) -> dict[str, Any]:
    """The problem+json body for a refusal gunicorn makes itself."""
    from services.api.problems import problem_type  # after the fork: see the module docstring

    slug = "internal-error" if status == 500 else _slug(reason)
    return {
        "type": problem_type(slug),
        "title": _REFUSAL_TITLES.get(status, reason),
        "status": status,
        "detail": detail or reason,
    }


def write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error`` (same arguments) that writes problem+json."""
    from services.api.problems import PROBLEM_CONTENT_TYPE

    body = json.dumps(refusal_problem(status_int, reason, mesg)).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: {PROBLEM_CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


class _ProblemRefusals:
    def init_process(self) -> None:
        util.write_error = write_problem
        super().init_process()  # type: ignore[misc]  # gunicorn is untyped; this runs the worker


class GeventApiWorker(_ProblemRefusals, GeventWorker):
    """gunicorn's gevent worker answering its refusals with problem+json."""


class ThreadApiWorker(_ProblemRefusals, ThreadWorker):
    """gunicorn's gthread worker answering its refusals with problem+json."""


class ApiLogger(Logger):
    """gunicorn's logger without access lines. The API writes its own (request_log.py, with the
    request id and the time taken); gunicorn's went to a logger that drops them, but with a
    logging configuration set gunicorn still built each line's fields first: 2.4 % of an API
    process's CPU under a stream of submits."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None
