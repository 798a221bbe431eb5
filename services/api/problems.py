"""RFC 9457 problem details: every error the API returns has this one shape.

``type`` is a stable URN per kind of problem, so clients can branch on it; ``title`` is
constant per type; ``detail`` explains this occurrence.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, json
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from shared.logs import get_logger

log = get_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"

_HTTP_PROBLEM_TYPES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Missing or invalid API key"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("too-many-requests", "Too many requests"),
    500: ("internal-error", "Internal server error"),
    502: ("job-failed", "The job failed"),
    503: ("service-unavailable", "Service unavailable"),
    504: ("timeout", "Timed out"),
}


def problem_type(slug: str) -> str:
    return f"urn:chatq:problem:{slug}"


class Problem(Exception):
    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions

    @classmethod
    def for_status(cls, status: int, detail: str, **extensions: Any) -> Problem:
        slug, title = _HTTP_PROBLEM_TYPES.get(status, ("error", "Error"))
        return cls(status, slug, title, detail, **extensions)

    def to_response(self) -> Response:
        body = {
            "type": problem_type(self.slug),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }
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
        return Problem(400, "invalid-json", "Malformed JSON", "The request body is not valid JSON.")
    detail = "; ".join(f"{item['loc']}: {item['message']}" for item in errors)
    return Problem(422, "validation-error", "Invalid request", detail, errors=errors)


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
            503, "database-unavailable", "Service unavailable",
            "The database is unreachable; nothing was stored. Retry shortly.",
            headers={"Retry-After": "2"},
        )  # fmt: skip
        return problem.to_response()

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled_error", error=repr(error))
        return Problem.for_status(500, "An unexpected error occurred.").to_response()
