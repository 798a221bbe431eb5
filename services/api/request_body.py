"""Reading a JSON request body into a pydantic model, strictly.

Strict validation: ``"5"`` is not a number and unknown fields are refused, so a client's typo is
an error rather than a silently ignored option.

Before any model sees the body, two things no endpoint can store are refused wherever they are:
NUL characters (Postgres text and JSONB cannot hold them) and ``NaN``/``Infinity`` (JSON has no
such numbers, but Python's and pydantic's parsers accept them, and Postgres JSONB does not). On
SQLite both used to be stored and on Postgres both used to answer 500; now both backends answer
422 alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, TypeVar

import pydantic_core
from flask import request
from pydantic import BaseModel

from services.api.context import api_context
from services.api.problems import Problem, ProblemType

M = TypeVar("M", bound=BaseModel)

_READ_CHUNK_BYTES = 64 * 1024


def parse_json_body(model: type[M]) -> M:
    if request.mimetype != "application/json":
        raise Problem(
            ProblemType.UNSUPPORTED_MEDIA_TYPE,
            "Send the body as JSON with `Content-Type: application/json`.",
        )
    settings = api_context().settings
    raw = read_body(settings.max_request_bytes)
    if not raw.strip():
        raise Problem(ProblemType.INVALID_JSON, "The request body is empty.")
    try:
        document = pydantic_core.from_json(raw, allow_inf_nan=True)
    except ValueError:
        raise Problem(ProblemType.INVALID_JSON, "The request body is not valid JSON.") from None
    refuse_unstorable_values(document)
    return model.model_validate_json(raw, strict=True, context={"settings": settings})


def read_body(limit: int) -> bytes:
    """The whole request body, or 413 if it is longer than ``limit`` bytes.

    A body with a ``Content-Length`` over the limit is refused by Werkzeug before it is read.
    A chunked body has no length: Werkzeug's limited stream then stops quietly at the limit, and
    the cut-off prefix used to be accepted. Such a body is read here up to one byte past the
    limit, which tells a body that fits from one that does not.
    """
    if request.content_length is not None or "wsgi.input_terminated" not in request.environ:
        # a declared length (checked against MAX_CONTENT_LENGTH), or a server that cannot
        # frame a streamed body (Werkzeug then gives an empty stream)
        return request.get_data(cache=True)
    stream = request.environ["wsgi.input"]
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(min(_READ_CHUNK_BYTES, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise Problem(
                ProblemType.PAYLOAD_TOO_LARGE,
                f"The request body is larger than the limit of {limit} bytes.",
            )
    return b"".join(chunks)


def refuse_unstorable_values(document: Any) -> None:
    """422 naming every place in ``document`` that holds a NUL or a non-finite number."""
    errors = [
        {"loc": ".".join(path) or "(body)", "message": message, "type": kind}
        for path, message, kind in _unstorable(document, ())
    ]
    if errors:
        detail = "; ".join(f"{error['loc']}: {error['message']}" for error in errors[:10])
        raise Problem(ProblemType.VALIDATION_ERROR, detail, errors=errors[:100])


def _unstorable(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str, str]]:
    if isinstance(value, str):
        if "\x00" in value:
            yield path, "must not contain NUL characters", "string_nul"
    elif isinstance(value, float):
        if not math.isfinite(value):
            yield path, "must be a finite number (JSON has no NaN or Infinity)", "float_finite"
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield (*path, key), "keys must not contain NUL characters", "string_nul"
            yield from _unstorable(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unstorable(item, (*path, str(index)))
