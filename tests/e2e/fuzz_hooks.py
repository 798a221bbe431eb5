"""Schemathesis hooks for tests/e2e/test_fuzz.py, loaded by its CLI (``SCHEMATHESIS_HOOKS``).

Schemathesis feeds ids it saw in responses back into path parameters: ``GET /v1/keys`` lists the
fuzzing key itself, and a revoke (or a rotation with ``grace_s: 0``) of that key would answer 401
to every request after it. Calls that would revoke or rotate the fuzzing key go to a spare key of
the same tenant instead, so revoke and rotate are still exercised on a real key.

``POST /v1/batches`` takes JSON lines, which schemathesis has no serializer for: the one here
writes each item of the generated array (the document's reading of JSON lines) as a line.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import schemathesis

PROTECTED_KEY_ENV = "FUZZ_PROTECTED_KEY_ID"
SPARE_KEY_ENV = "FUZZ_SPARE_KEY_ID"


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: Any) -> None:
    parameters = case.path_parameters
    if parameters and _same_key(parameters.get("key_id"), os.environ[PROTECTED_KEY_ENV]):
        parameters["key_id"] = os.environ[SPARE_KEY_ENV]


def _same_key(value: object, key_id: str) -> bool:
    try:
        return uuid.UUID(str(value)) == uuid.UUID(key_id)
    except ValueError:
        return False


@schemathesis.serializer("application/jsonl")
def to_json_lines(_context: Any, value: Any) -> bytes:
    # anything but an array (negative cases send any JSON value) goes as a single line
    items = value if isinstance(value, list) else [value]
    return "\n".join(json.dumps(item) for item in items).encode()
