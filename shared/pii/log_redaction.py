"""Personal data out of log lines: a one-shot redaction and a structlog processor."""

from __future__ import annotations

import re
import secrets
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any

from shared.pii.anonymizer import Anonymizer
from shared.pii.placeholders import PlaceholderMap

# The shortest built-in PII is an e-mail like "a@b.cn" (6 characters).
_SHORTEST_PII = 6
_MAX_DEPTH = 4
_DIGIT_OR_AT = re.compile(r"[0-9@\uff10-\uff19\uff20]")


@lru_cache(maxsize=1)
def _default_anonymizer() -> Anonymizer:
    return Anonymizer()


def redact_pii(text: str) -> str:
    """``text`` with built-in PII kinds replaced by placeholders, for log lines.

    Each call numbers its placeholders afresh with a throwaway secret: ``<PHONE_1>`` in two
    log lines need not be the same number, and nothing logged can be traced back to one.
    """
    return _default_anonymizer().anonymize(text, PlaceholderMap(secrets.token_bytes(16)))


def _might_hold_pii(text: str) -> bool:
    # Cheap enough for every log event: most values (ids, levels, short words) stop here.
    return len(text) >= _SHORTEST_PII and _DIGIT_OR_AT.search(text) is not None


def _redacted(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return redact_pii(value) if _might_hold_pii(value) else value
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {key: _redacted(item, depth + 1) for key, item in value.items()}
    if type(value) in (list, tuple):  # not named tuples: their constructors differ
        return type(value)(_redacted(item, depth + 1) for item in value)
    return value


def pii_log_processor(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: anonymises every string in the event (nested dicts and lists too).

    Place it after ``format_exc_info`` so tracebacks are covered, and before the renderer.
    Keys are left alone; values that are not strings, dicts or lists pass untouched.
    """
    for key, value in list(event_dict.items()):
        event_dict[key] = _redacted(value, 0)
    return event_dict
