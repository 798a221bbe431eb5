"""Reading a JSON request body into a pydantic model, strictly.

Strict validation: ``"5"`` is not a number and unknown fields are refused, so a client's typo is
an error rather than a silently ignored option.
"""

from __future__ import annotations

from typing import TypeVar

from flask import request
from pydantic import BaseModel

from services.api.context import api_context
from services.api.problems import Problem

M = TypeVar("M", bound=BaseModel)


def parse_json_body(model: type[M]) -> M:
    if request.mimetype != "application/json":
        raise Problem(
            415, "unsupported-media-type", "Unsupported media type",
            "Send the body as JSON with `Content-Type: application/json`.",
        )  # fmt: skip
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise Problem(400, "invalid-json", "Malformed JSON", "The request body is empty.")
    return model.model_validate_json(raw, strict=True, context={"settings": api_context().settings})
