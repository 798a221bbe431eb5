"""PlaceholderMap: one placeholder per value and kind, keyed by HMAC, never holding the value."""

from __future__ import annotations

import pytest

from shared.pii import PlaceholderMap

SECRET = b"placeholder-secret"


def test_each_kind_is_numbered_on_its_own_and_a_value_keeps_its_number() -> None:
    placeholders = PlaceholderMap(SECRET)
    assert placeholders.placeholder_for("PHONE", "+8613812345678") == "<PHONE_1>"
    assert placeholders.placeholder_for("EMAIL", "a@b.cn") == "<EMAIL_1>"
    assert placeholders.placeholder_for("PHONE", "+4915123456789") == "<PHONE_2>"
    assert placeholders.placeholder_for("PHONE", "+8613812345678") == "<PHONE_1>"
    assert placeholders.placeholder_for("ORDER_REF", "ORD-1") == "<ORDER_REF_1>"
    assert len(placeholders) == 4


@pytest.mark.parametrize(
    ("kind", "one", "other"),
    [
        ("EMAIL", "Anna@Example.DE", " anna@example.de"),
        ("PHONE", "+86 138-1234-5678", "+8613812345678"),
        ("BANK_CARD", "4111 1111 1111 1111", "4111-1111-1111-1111"),
        ("IBAN", "de89 3704 0044 0532 0130 00", "DE89370400440532013000"),
        ("IP", "2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("CN_ID", "11010519491231002x", "110105 19491231 002X"),
    ],
)
def test_spellings_of_one_value_share_a_placeholder(kind: str, one: str, other: str) -> None:
    placeholders = PlaceholderMap(SECRET)
    assert placeholders.placeholder_for(kind, one) == placeholders.placeholder_for(kind, other)


def test_the_same_text_as_two_kinds_gets_two_placeholders() -> None:
    placeholders = PlaceholderMap(SECRET)
    assert placeholders.placeholder_for("ORDER_REF", "12345678") == "<ORDER_REF_1>"
    assert placeholders.placeholder_for("TICKET", "12345678") == "<TICKET_1>"
    assert len(placeholders) == 2


def test_json_holds_no_value_and_a_reloaded_map_goes_on_numbering() -> None:
    placeholders = PlaceholderMap(SECRET)
    placeholders.placeholder_for("PHONE", "+8613812345678")
    placeholders.placeholder_for("PHONE", "+4915123456789")
    stored = placeholders.to_json()
    assert "13812345678" not in str(stored)
    assert sorted(stored.values()) == ["<PHONE_1>", "<PHONE_2>"]

    reloaded = PlaceholderMap.from_json(SECRET, stored)
    assert reloaded.placeholder_for("PHONE", "+4915123456789") == "<PHONE_2>"
    assert reloaded.placeholder_for("PHONE", "+12025550100") == "<PHONE_3>"
    # to_json is a copy: changing it does not change the map
    stored.clear()
    assert len(reloaded) == 3


def test_numbering_continues_after_the_highest_number_even_with_gaps() -> None:
    placeholders = PlaceholderMap(SECRET)
    placeholders.placeholder_for("PHONE", "+8613812345678")
    (digest,) = placeholders.to_json()
    reloaded = PlaceholderMap.from_json(SECRET, {digest: "<PHONE_7>"})
    assert reloaded.placeholder_for("PHONE", "+4915123456789") == "<PHONE_8>"


def test_a_different_secret_gives_different_digests() -> None:
    one, two = PlaceholderMap(b"one"), PlaceholderMap(b"two")
    one.placeholder_for("PHONE", "+8613812345678")
    two.placeholder_for("PHONE", "+8613812345678")
    assert one.to_json().keys() != two.to_json().keys()


GOOD_DIGEST = "a" * 64


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"abc": "<PHONE_1>"}, "not a hex HMAC-SHA256 digest"),
        ({GOOD_DIGEST: "PHONE_1"}, "is not a placeholder"),
        ({GOOD_DIGEST: "<phone_1>"}, "is not a placeholder"),
        ({GOOD_DIGEST: "<PHONE_0>"}, "is not a placeholder"),
        ({GOOD_DIGEST: 7}, "is not a placeholder"),
        ({GOOD_DIGEST: "<PHONE_1>", "b" * 64: "<PHONE_1>"}, "given to two values"),
        (["<PHONE_1>"], "must be an object"),
    ],
)
def test_malformed_stored_maps_are_refused(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PlaceholderMap.from_json(SECRET, data)  # type: ignore[arg-type]


def test_a_secret_and_a_clean_kind_are_required() -> None:
    with pytest.raises(ValueError, match="non-empty secret"):
        PlaceholderMap(b"")
    with pytest.raises(ValueError, match="upper-case"):
        PlaceholderMap(SECRET).placeholder_for("phone", "+8613812345678")
