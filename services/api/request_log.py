"""A request id on every API log line and answer, and one JSON access line per request.

The id is the caller's ``X-Request-Id`` when it is a sensible token (a proxy or the backend
may have set one to follow a request through its own logs), else a fresh one; it is bound to
the logging context for the request (``structlog.contextvars``: each gevent greenlet or thread
has its own) and returned in ``X-Request-Id``.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from flask import Flask, Response, g, request

from shared.logs import get_logger

log = get_logger("chatq.access")

REQUEST_ID_HEADER = "X-Request-Id"
_ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# Probes answered every few seconds: logged at debug level, or they drown the rest.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def install_request_log(app: Flask) -> None:
    @app.before_request
    def _bind_request_id() -> None:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = offered if _ACCEPTABLE_ID.fullmatch(offered) else uuid.uuid4().hex
        g.request_id = request_id
        g.request_started = time.perf_counter()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        job_id = (request.view_args or {}).get("job_id")
        if job_id is not None:  # every line about this request concerns that job
            structlog.contextvars.bind_contextvars(job_id=str(job_id))

    @app.after_request
    def _log_and_tag(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id is not None:
            response.headers[REQUEST_ID_HEADER] = request_id
        started = g.get("request_started")
        duration_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
        emit = log.debug if request.path in _QUIET_PATHS else log.info
        emit(
            "http_request",
            method=request.method,
            path=request.path,
            status=response.status_code,
            duration_ms=duration_ms,
            remote_addr=request.remote_addr,
            bytes=response.calculate_content_length(),
        )
        return response

    @app.teardown_request
    def _unbind(_error: BaseException | None) -> None:
        structlog.contextvars.unbind_contextvars("request_id", "job_id", "session_id")
