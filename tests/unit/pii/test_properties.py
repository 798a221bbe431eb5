"""Property tests: every generated valid value is replaced, consistently; near misses are not.

Each valid value is embedded in generated English or Chinese text; the anonymised text must be
exactly the surrounding text with one placeholder where the value was, so a span that is too
short, too long or of the wrong kind fails as surely as a miss.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from stdnum import luhn

from shared.pii import Anonymizer, PiiPattern, PlaceholderMap
from shared.pii.detectors import is_cn_resident_id
from tests.unit.pii import strategies as gen

ANONYMIZER = Anonymizer(
    [PiiPattern("order_ref", r"ORD-[0-9]{8}-[0-9]{4}"), PiiPattern("TICKET", r"TK[A-Z]{2}[0-9]{6}")]
)
SECRET = b"property-test-secret"


def _assert_replaced(value: str, around: tuple[str, str], kind: str) -> PlaceholderMap:
    left, right = around
    placeholders = PlaceholderMap(SECRET)
    anonymised = ANONYMIZER.anonymize(f"{left}{value}{right}", placeholders)
    assert anonymised == f"{left}<{kind}_1>{right}"
    return placeholders


def _assert_untouched(value: str, around: tuple[str, str]) -> None:
    text = f"{around[0]}{value}{around[1]}"
    assert ANONYMIZER.find(text) == []
    assert ANONYMIZER.anonymize(text, PlaceholderMap(SECRET)) == text


# --- phone numbers ----------------------------------------------------------------------------


# A national number can be valid in two countries ("089 10000000" is Munich, and read as
# Chinese, 0891 Lhasa); the default region decides, so German numbers go to an anonymiser
# whose default is DE.
ANONYMIZER_DE = Anonymizer(default_region="DE")


@gen.PII_EXAMPLES
@given(
    phone=st.one_of(
        gen.cn_mobiles().map(lambda p: (*p, ANONYMIZER)),
        gen.international_numbers().map(lambda p: (*p, ANONYMIZER)),
        gen.german_numbers().map(lambda p: (*p, ANONYMIZER_DE)),
    ),
    other=gen.cn_mobiles(),
    around=gen.surroundings(),
)
def test_phone_numbers_are_replaced_and_numbered_per_number(
    phone: tuple[str, str, Anonymizer], other: tuple[str, str], around: tuple[str, str]
) -> None:
    (written, e164, anonymizer), (other_written, other_e164) = phone, other
    left, right = around
    placeholders = PlaceholderMap(SECRET)
    assert anonymizer.anonymize(f"{left}{written}{right}", placeholders) == (
        f"{left}<PHONE_1>{right}"
    )
    # the same number, written as E.164, is the same placeholder; another number the next one
    assert anonymizer.anonymize(f"call {e164} now", placeholders) == "call <PHONE_1> now"
    expected = "<PHONE_1>" if other_e164 == e164 else "<PHONE_2>"
    assert anonymizer.anonymize(f"或者{other_written}。", placeholders) == f"或者{expected}。"


@gen.PII_EXAMPLES
@given(phone=gen.cn_mobiles(), around=gen.surroundings(), cut=st.sampled_from(["short", "long"]))
def test_chinese_mobiles_with_a_digit_too_few_or_too_many_are_left_alone(
    phone: tuple[str, str], around: tuple[str, str], cut: str
) -> None:
    digits = phone[1].removeprefix("+86")
    near_miss = digits[:-1] if cut == "short" else digits + digits[-1]
    _assert_untouched(near_miss, around)


# --- Chinese resident ID ------------------------------------------------------------------------


@gen.PII_EXAMPLES
@given(number=gen.cn_resident_ids(), around=gen.surroundings())
def test_chinese_resident_ids_are_replaced(number: str, around: tuple[str, str]) -> None:
    placeholders = _assert_replaced(number, around, "CN_ID")
    compact = number.replace(" ", "").upper()
    assert ANONYMIZER.anonymize(compact, placeholders) == "<CN_ID_1>"


@gen.PII_EXAMPLES
@given(number=gen.cn_resident_id_near_misses(), around=gen.surroundings())
def test_chinese_resident_id_near_misses_are_left_alone(
    number: str, around: tuple[str, str]
) -> None:
    assert not is_cn_resident_id(number.upper())
    # 18 digits that pass Luhn may be a UnionPay card: replacing those is right.
    assume(not (number.isdigit() and 13 <= len(number) <= 19 and luhn.is_valid(number)))
    _assert_untouched(number, around)


# --- bank cards ---------------------------------------------------------------------------------


@gen.PII_EXAMPLES
@given(card=gen.bank_cards(), around=gen.surroundings())
def test_bank_cards_are_replaced(card: str, around: tuple[str, str]) -> None:
    digits = re.sub(r"[ -]", "", card)
    assume(not is_cn_resident_id(digits))  # an 18-digit valid ID is reported as an ID
    placeholders = _assert_replaced(card, around, "BANK_CARD")
    assert ANONYMIZER.anonymize(f"card {digits}", placeholders) == "card <BANK_CARD_1>"


@gen.PII_EXAMPLES
@given(card=gen.bank_card_near_misses(), around=gen.surroundings())
def test_bank_card_near_misses_are_left_alone(card: str, around: tuple[str, str]) -> None:
    _assert_untouched(card, around)


# --- IBANs --------------------------------------------------------------------------------------


@gen.PII_EXAMPLES
@given(number=gen.ibans(), around=gen.surroundings())
def test_ibans_are_replaced(number: str, around: tuple[str, str]) -> None:
    placeholders = _assert_replaced(number, around, "IBAN")
    compact = number.replace(" ", "")
    assert ANONYMIZER.anonymize(f"IBAN: {compact}", placeholders) == "IBAN: <IBAN_1>"


@gen.PII_EXAMPLES
@given(number=gen.iban_near_misses(), around=gen.surroundings())
def test_iban_near_misses_are_left_alone(number: str, around: tuple[str, str]) -> None:
    _assert_untouched(number, around)


# --- e-mail and IP addresses --------------------------------------------------------------------


@gen.PII_EXAMPLES
@given(address=gen.emails(), around=gen.surroundings())
def test_email_addresses_are_replaced_whatever_their_case(
    address: str, around: tuple[str, str]
) -> None:
    placeholders = _assert_replaced(address, around, "EMAIL")
    assert ANONYMIZER.anonymize(address.swapcase(), placeholders) == "<EMAIL_1>"


@gen.PII_EXAMPLES
@given(
    address=st.one_of(gen.ipv4_addresses, gen.ipv6_addresses),
    around=gen.surroundings(),
)
def test_ip_addresses_are_replaced(address: str, around: tuple[str, str]) -> None:
    _assert_replaced(address, around, "IP")


@gen.PII_EXAMPLES
@given(address=gen.ip_near_misses(), around=gen.surroundings())
def test_ip_near_misses_are_left_alone(address: str, around: tuple[str, str]) -> None:
    _assert_untouched(address, around)


# --- tenant patterns ----------------------------------------------------------------------------


@gen.PII_EXAMPLES
@given(
    reference=st.from_regex(r"ORD-[0-9]{8}-[0-9]{4}", fullmatch=True),
    ticket=st.from_regex(r"TK[A-Z]{2}[0-9]{6}", fullmatch=True),
    around=gen.surroundings(),
)
def test_tenant_patterns_are_replaced_under_their_own_name(
    reference: str, ticket: str, around: tuple[str, str]
) -> None:
    placeholders = _assert_replaced(reference, around, "ORDER_REF")
    assert ANONYMIZER.anonymize(f"{ticket} {reference}", placeholders) == (
        "<TICKET_1> <ORDER_REF_1>"
    )


# --- a conversation -----------------------------------------------------------------------------


@gen.PII_EXAMPLES
@given(
    values=st.lists(
        st.one_of(
            gen.cn_mobiles().map(lambda p: ("PHONE", p[0], p[1])),
            gen.emails().map(lambda e: ("EMAIL", e, e.casefold())),
            gen.bank_cards().map(lambda c: ("BANK_CARD", c, re.sub(r"[ -]", "", c))),
            gen.ipv4_addresses.map(lambda a: ("IP", a, a)),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_conversation_keeps_one_placeholder_per_value_across_messages_and_storage(
    values: list[tuple[str, str, str]],
) -> None:
    assume(not any(k == "BANK_CARD" and is_cn_resident_id(c) for k, _, c in values))
    placeholders = PlaceholderMap(SECRET)
    first_seen: dict[tuple[str, str], str] = {}
    numbers: dict[str, int] = {}
    for kind, written, canonical in values:
        # each message goes through a stored-and-reloaded map, as the worker would do
        placeholders = PlaceholderMap.from_json(SECRET, placeholders.to_json())
        if (kind, canonical) not in first_seen:
            numbers[kind] = numbers.get(kind, 0) + 1
            first_seen[(kind, canonical)] = f"<{kind}_{numbers[kind]}>"
        expected = first_seen[(kind, canonical)]
        assert ANONYMIZER.anonymize(f"消息：{written}。", placeholders) == f"消息：{expected}。"
    stored = str(placeholders.to_json())
    for _, written, canonical in values:
        assert written not in stored and canonical not in stored


@pytest.mark.parametrize("kind", ["PHONE", "EMAIL"])
def test_placeholders_depend_on_the_secret_not_only_on_the_value(kind: str) -> None:
    one, two = PlaceholderMap(b"one"), PlaceholderMap(b"two")
    one.placeholder_for(kind, "+8613812345678")
    two.placeholder_for(kind, "+8613812345678")
    assert one.to_json() != two.to_json()
