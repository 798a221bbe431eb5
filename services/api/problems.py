"""RFC 9457 problem details: every error the API returns has this one shape.

``type`` is a stable URN per kind of problem, so clients can branch on it; ``title`` is
constant per type; ``detail`` explains this occurrence.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from flask import Flask, Response, json
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from shared.logs import get_logger

log = get_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"


class ProblemType(Enum):
    """Every kind of problem the API answers with: (slug, status, title).

    The slug makes the stable ``type`` URN clients branch on; the title is constant per type.
    """

    # generic ones, for HTTP errors raised by Flask and Werkzeug
    BAD_REQUEST = ("bad-request", 400, "Bad request")
    UNAUTHORIZED = ("unauthorized", 401, "Missing or invalid API key")
    FORBIDDEN = ("forbidden", 403, "Forbidden")
    NOT_FOUND = ("not-found", 404, "Not found")
    METHOD_NOT_ALLOWED = ("method-not-allowed", 405, "Method not allowed")
    CONFLICT = ("conflict", 409, "Conflict")
    PAYLOAD_TOO_LARGE = ("payload-too-large", 413, "Request body too large")
    UNSUPPORTED_MEDIA_TYPE = ("unsupported-media-type", 415, "Unsupported media type")
    TOO_MANY_REQUESTS = ("too-many-requests", 429, "Too many requests")
    INTERNAL_ERROR = ("internal-error", 500, "Internal server error")
    SERVICE_UNAVAILABLE = ("service-unavailable", 503, "Service unavailable")
    # the request
    INVALID_JSON = ("invalid-json", 400, "Malformed JSON")
    INVALID_PARAMETER = ("invalid-parameter", 400, "Invalid query parameter")
    INVALID_IDEMPOTENCY_KEY = ("invalid-idempotency-key", 400, "Invalid Idempotency-Key")
    VALIDATION_ERROR = ("validation-error", 422, "Invalid request")
    INVALID_ID = ("invalid-id", 422, "Invalid id")
    INVALID_WEBHOOK_URL = ("invalid-webhook-url", 422, "Webhook URL refused")
    # access and limits
    IP_NOT_ALLOWED = ("ip-not-allowed", 403, "Address not allowed")
    INSUFFICIENT_SCOPE = ("insufficient-scope", 403, "Missing scope")
    RATE_LIMITED = ("rate-limited", 429, "Rate limit exceeded")
    TOO_MANY_WAITS = ("too-many-waits", 429, "Too many open waits")
    QUEUE_FULL = ("queue-full", 429, "Too many jobs waiting")
    TENANT_QUEUE_FULL = ("tenant-queue-full", 429, "Too many open jobs")
    # the state of a resource
    IDEMPOTENCY_KEY_REUSED = ("idempotency-key-reused", 409, "Idempotency-Key reused")
    JOB_FINISHED = ("job-finished", 409, "Job already finished")
    BATCH_NOT_IN_PROGRESS = ("batch-not-in-progress", 409, "Batch not in progress")
    JOB_NOT_COMPLETED = ("job-not-completed", 409, "Job not completed")
    JOB_ERASED = ("job-erased", 409, "Job texts erased")
    MODEL_NOT_SERVABLE = ("model-not-servable", 409, "Model folder not servable")
    SESSION_BUSY = ("session-busy", 409, "Session has unfinished jobs")
    NOTHING_TO_RESEND = ("nothing-to-resend", 409, "Nothing to re-send")
    KEY_NOT_USABLE = ("key-not-usable", 409, "Key revoked or expired")
    # the job and the service
    JOB_FAILED = ("job-failed", 502, "The job failed")
    TIMEOUT = ("timeout", 504, "Timed out")
    NOT_READY = ("not-ready", 503, "Not ready")
    DATABASE_UNAVAILABLE = ("database-unavailable", 503, "Service unavailable")
    # an HTTP error of a status the catalogue has no type of; it keeps its own status
    ERROR = ("error", 500, "Error")

    def __init__(self, slug: str, status: int, title: str) -> None:
        self.slug = slug
        self.status = status
        self.title = title

    @property
    def uri(self) -> str:
        return problem_type(self.slug)

    @classmethod
    def for_status(cls, status: int) -> ProblemType:
        """The generic type of an HTTP status (``ERROR`` for one the catalogue lacks)."""
        return _GENERIC_TYPES.get(status, cls.ERROR)


_GENERIC_TYPES = {
    kind.status: kind
    for kind in (
        ProblemType.BAD_REQUEST,
        ProblemType.UNAUTHORIZED,
        ProblemType.FORBIDDEN,
        ProblemType.NOT_FOUND,
        ProblemType.METHOD_NOT_ALLOWED,
        ProblemType.CONFLICT,
        ProblemType.PAYLOAD_TOO_LARGE,
        ProblemType.UNSUPPORTED_MEDIA_TYPE,
        ProblemType.TOO_MANY_REQUESTS,
        ProblemType.INTERNAL_ERROR,
        ProblemType.JOB_FAILED,
        ProblemType.SERVICE_UNAVAILABLE,
        ProblemType.TIMEOUT,
    )
}


def problem_type(slug: str) -> str:
    return f"urn:chatq:problem:{slug}"


class Problem(Exception):
    """An error answered as problem details: its ``kind`` from the catalogue, ``detail`` about
    this occurrence, extension members as keywords."""

    def __init__(
        self,
        kind: ProblemType,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.status = kind.status
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions

    @classmethod
    def for_status(cls, status: int, detail: str, **extensions: Any) -> Problem:
        """The problem of an HTTP error (Flask's, Werkzeug's) of ``status``."""
        problem = cls(ProblemType.for_status(status), detail, **extensions)
        problem.status = status  # ERROR stands for any status; the answer keeps the real one
        return problem

    def body(self) -> dict[str, Any]:
        """The problem details object (also sent inside streams, where no status line is
        left to set)."""
        return {
            "type": self.kind.uri,
            "title": self.kind.title,
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }

    def to_response(self) -> Response:
        body = self.body()
        response = Response(json.dumps(body), status=self.status, mimetype=PROBLEM_CONTENT_TYPE)
        response.headers.update(self.headers)
        return response


def validation_problem(error: ValidationError) -> Problem:
    errors = [
        {
            "loc": ".".join(str(part) for part in item["loc"]) or "(body)",
            "message": item["msg"],
            "type": item["type"],
        }
        for item in error.errors(include_url=False, include_input=False)
    ]
    if any(item["type"] == "json_invalid" for item in errors):
        return Problem(ProblemType.INVALID_JSON, "The request body is not valid JSON.")
    detail = "; ".join(f"{item['loc']}: {item['message']}" for item in errors)
    return Problem(ProblemType.VALIDATION_ERROR, detail, errors=errors)


def register_problem_handlers(app: Flask) -> None:
    @app.errorhandler(Problem)
    def _problem(problem: Problem) -> Response:
        return problem.to_response()

    @app.errorhandler(ValidationError)
    def _validation(error: ValidationError) -> Response:
        return validation_problem(error).to_response()

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        status = error.code or 500
        problem = Problem.for_status(status, error.description or "")
        response = problem.to_response()
        if status == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def _database_unavailable(error: Exception) -> Response:
        # The database is restarting or unreachable: nothing was accepted, the client retries.
        log.warning("database_unavailable", error=repr(error))
        problem = Problem(
            ProblemType.DATABASE_UNAVAILABLE,
            "The database is unreachable; nothing was stored. Retry shortly.",
            headers={"Retry-After": "2"},
        )
        return problem.to_response()

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled_error", error=repr(error))
        return Problem(ProblemType.INTERNAL_ERROR, "An unexpected error occurred.").to_response()
