"""Personal data never reaches a log line: redact_pii and the structlog processor."""

from __future__ import annotations

import json

import structlog

from shared.pii import pii_log_processor, redact_pii


def test_redact_pii_replaces_every_builtin_kind() -> None:
    line = "user a@b.cn called from 13812345678 and 10.0.0.1 paying with 4111 1111 1111 1111"
    assert redact_pii(line) == (
        "user <EMAIL_1> called from <PHONE_1> and <IP_1> paying with <BANK_CARD_1>"
    )


def test_the_processor_redacts_strings_nested_in_the_event_and_leaves_the_rest() -> None:
    items = ["13812345678", 5]
    event = {
        "event": "webhook failed for a@b.cn",
        "job_id": "123e4567-e89b-12d3-a456-426614174000",
        "status": 500,
        "level": "error",
        "payload": {"text": "我的手机是13812345678", "count": 2},
        "items": items,
        "pair": ("x", "card 4111111111111111"),
    }
    redacted = pii_log_processor(None, "error", event)
    assert redacted == {
        "event": "webhook failed for <EMAIL_1>",
        "job_id": "123e4567-e89b-12d3-a456-426614174000",
        "status": 500,
        "level": "error",
        "payload": {"text": "我的手机是<PHONE_1>", "count": 2},
        "items": ["<PHONE_1>", 5],
        "pair": ("x", "card <BANK_CARD_1>"),
    }
    assert items == ["13812345678", 5]  # the caller's objects are not changed


def test_short_strings_and_strings_without_digits_or_at_are_passed_through_as_they_are() -> None:
    short, wordy = "a@b.c", "no personal data in this long sentence at all"
    redacted = pii_log_processor(None, "info", {"a": short, "b": wordy})
    assert redacted["a"] is short and redacted["b"] is wordy


def test_a_rendered_structlog_line_holds_no_phone_number() -> None:
    logger = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[pii_log_processor, structlog.processors.JSONRenderer()],
    )
    line = logger.info("customer wrote", text="call me at +49 151 23456789")
    assert json.loads(line) == {"event": "customer wrote", "text": "call me at <PHONE_1>"}
