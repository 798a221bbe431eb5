"""Tenant patterns are checked when they are configured, not when a message trips over them."""

from __future__ import annotations

import pytest

from shared.pii import PiiPattern


@pytest.mark.parametrize(
    "regex",
    [
        r"ORD-[0-9]{8}-[0-9]{4}",
        r"(?:[A-Z]{2}-)+[0-9]{6}",  # fixed counts inside a repeated group
        r"(\d{3}-)+\d{4}",
        r"(?i)ticket\s*#?\d+",
        r"[A-Z]{3}(?=\d)\d{5}",
    ],
)
def test_reasonable_patterns_are_accepted(regex: str) -> None:
    pattern = PiiPattern("order_ref", regex)
    assert pattern.kind == "ORDER_REF"


@pytest.mark.parametrize(
    ("name", "regex", "message"),
    [
        ("1st", r"\d+", "name '1st' is invalid"),
        ("order ref", r"\d+", "is invalid"),
        ("x" * 33, r"\d+", "is invalid"),
        ("ref", "", "empty"),
        ("ref", "a" * 501, "501 characters long, at most 500"),
        ("ref", r"ORD-(\d+", "does not compile"),
        ("ref", r"\d*", "matches the empty string"),
        ("ref", r"(a+)+$", "backtrack catastrophically"),
        ("ref", r"(\w+\s?)*x", "backtrack catastrophically"),
        ("ref", r"(?:x(?:\d{1,20})){2,}", "backtrack catastrophically"),
        ("ref", r"(?:(?:a|b+)c)+", "backtrack catastrophically"),
        ("ref", r"(\d)x\1", "back-references"),
    ],
)
def test_bad_patterns_are_refused_with_a_clear_message(name: str, regex: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PiiPattern(name, regex)
