"""Hypothesis strategies for the PII tests: valid values, near misses, and text around them."""

from __future__ import annotations

import datetime
import string

import phonenumbers
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from stdnum import iban, luhn
from stdnum.cn import ric

# Few examples, derandomised and without the example database: the same cases in every run,
# so CI never flakes, and the whole module runs in a few seconds.
settings.register_profile(
    "pii",
    max_examples=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
PII_EXAMPLES = settings.get_profile("pii")

# --- text around a value ----------------------------------------------------------------------

_english_words = st.lists(
    st.text(alphabet=string.ascii_letters, min_size=1, max_size=9), min_size=0, max_size=6
).map(" ".join)
_chinese_run = st.text(
    alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), min_size=0, max_size=10
)


@st.composite
def surroundings(draw: st.DrawFn) -> tuple[str, str]:
    """(left, right) text for a value: English words with spaces, or Chinese characters glued
    right against it ("我的手机是13812345678谢谢"), with the punctuation people put there."""
    if draw(st.booleans()):
        left = draw(_english_words)
        right = draw(_english_words)
        left = f"{left} " if left else ""
        punctuation = draw(st.sampled_from(["", ".", ",", "?", "!", ";", ")"]))
        right = punctuation + (f" {right}" if right else "")
        return left, right
    left = draw(_chinese_run) + draw(st.sampled_from(["", "：", "是", "（"]))
    right = draw(st.sampled_from(["", "，", "。", "！", "）"])) + draw(_chinese_run)
    return left, right


# --- phone numbers ----------------------------------------------------------------------------


def _is_valid_phone(number: str, region: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, region))
    except phonenumbers.NumberParseException:
        return False


_cn_mobile_digits = st.builds(
    lambda second, rest: f"1{second}{rest}",
    st.sampled_from("3456789"),
    st.text(alphabet=string.digits, min_size=9, max_size=9),
).filter(lambda n: _is_valid_phone(n, "CN"))


@st.composite
def cn_mobiles(draw: st.DrawFn) -> tuple[str, str]:
    """(as written, E.164) for a Chinese mobile: plain, grouped 3-4-4, with or without +86."""
    n = draw(_cn_mobile_digits)
    grouped = draw(st.sampled_from(["{}{}{}", "{} {} {}", "{}-{}-{}"])).format(n[:3], n[3:7], n[7:])
    prefix = draw(st.sampled_from(["", "+86", "+86 ", "+86-", "0086 "]))
    return prefix + grouped, f"+86{n}"


_de_national_digits = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(["0151", "0152", "0160", "0170", "0171", "0176", "030", "089", "040", "0221"]),
    st.text(alphabet=string.digits, min_size=7, max_size=8),
).filter(lambda n: _is_valid_phone(n, "DE"))


@st.composite
def german_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """(as written, E.164) for a German mobile or landline, national (0151 …) or +49 …."""
    number = phonenumbers.parse(draw(_de_national_digits), "DE")
    style = draw(st.sampled_from(["national", "international", "e164", "spaced"]))
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if style == "national":
        written = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    elif style == "international":
        written = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    elif style == "e164":
        written = e164
    else:
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        written = national.replace(" ", "", 1) if " " in national else national
    return written, e164


_INTERNATIONAL_REGIONS = ["US", "GB", "FR", "JP", "IN", "BR", "AU", "ES", "IT", "SG"]


@st.composite
def international_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """(as written with +CC, E.164) for numbers of other countries: each region's example
    number with its last digits drawn, kept when still valid."""
    region = draw(st.sampled_from(_INTERNATIONAL_REGIONS))
    kind = draw(
        st.sampled_from(
            [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
        )
    )
    example = phonenumbers.example_number_for_type(region, kind)
    assert example is not None
    national = str(example.national_number)
    tail = draw(st.text(alphabet=string.digits, min_size=3, max_size=3))
    candidate = f"+{example.country_code}{national[:-3]}{tail}"
    number = phonenumbers.parse(candidate, None)
    if not phonenumbers.is_valid_number(number):
        number = example
    written_format = draw(
        st.sampled_from(
            [phonenumbers.PhoneNumberFormat.INTERNATIONAL, phonenumbers.PhoneNumberFormat.E164]
        )
    )
    return (
        phonenumbers.format_number(number, written_format),
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
    )


# --- Chinese resident ID ------------------------------------------------------------------------

_AREA_CODES = ["110101", "110105", "310104", "440305", "510107", "330106", "420102", "320102"]
_birth_dates = st.dates(datetime.date(1930, 1, 1), datetime.date(2020, 12, 31))


def _with_check_digit(first17: str) -> str:
    return first17 + ric.calc_check_digit(first17 + "0")


@st.composite
def cn_resident_ids(draw: st.DrawFn) -> str:
    born = draw(_birth_dates)
    sequence = draw(st.text(alphabet=string.digits, min_size=3, max_size=3))
    number = _with_check_digit(f"{draw(st.sampled_from(_AREA_CODES))}{born:%Y%m%d}{sequence}")
    if number.endswith("X") and draw(st.booleans()):
        number = number[:-1] + "x"
    if draw(st.integers(0, 4)) == 0:  # sometimes written region / birth date / rest
        number = f"{number[:6]} {number[6:14]} {number[14:]}"
    return number


@st.composite
def cn_resident_id_near_misses(draw: st.DrawFn) -> str:
    """A wrong check digit, a birth date that does not exist, 17 or 19 digits."""
    born = draw(_birth_dates)
    first17 = f"{draw(st.sampled_from(_AREA_CODES))}{born:%Y%m%d}" + draw(
        st.text(alphabet=string.digits, min_size=3, max_size=3)
    )
    valid = _with_check_digit(first17)
    miss = draw(st.sampled_from(["check", "date", "short", "long"]))
    if miss == "check":
        wrong = draw(st.sampled_from([c for c in "0123456789X" if c != valid[-1]]))
        return valid[:-1] + wrong
    if miss == "date":
        month = draw(st.sampled_from(["00", "13", "19"]))
        return _with_check_digit(first17[:10] + month + first17[12:])
    if miss == "short":
        return valid[:-2] + valid[-1]
    return valid[:-1] + draw(st.sampled_from(string.digits)) + valid[-1]


# --- bank cards ---------------------------------------------------------------------------------

_CARD_PREFIXES = {  # prefix -> lengths, as issuers use them
    "4": (13, 16, 19),
    "51": (16,),
    "55": (16,),
    "2221": (16,),
    "34": (15,),
    "37": (15,),
    "62": (16, 17, 18, 19),
    "6011": (16,),
    "35": (16,),
}


def group_card(digits: str, separator: str) -> str:
    """How cards are printed: in fours, or 4-6-5 for 15-digit (Amex) numbers."""
    if len(digits) == 15 and separator:
        return separator.join([digits[:4], digits[4:10], digits[10:]])
    return separator.join(digits[i : i + 4] for i in range(0, len(digits), 4))


@st.composite
def card_digits(draw: st.DrawFn, length: int | None = None) -> str:
    prefix = draw(st.sampled_from(sorted(_CARD_PREFIXES)))
    size = length or draw(st.sampled_from(_CARD_PREFIXES[prefix]))
    free = size - len(prefix) - 1  # digits between the issuer prefix and the check digit
    body = prefix + draw(st.text(alphabet=string.digits, min_size=free, max_size=free))
    return body + luhn.calc_check_digit(body)


@st.composite
def bank_cards(draw: st.DrawFn) -> str:
    return group_card(draw(card_digits()), draw(st.sampled_from(["", " ", "-"])))


@st.composite
def bank_card_near_misses(draw: st.DrawFn) -> str:
    """One digit changed (Luhn catches every single-digit error), 12 digits, or 20."""
    miss = draw(st.sampled_from(["digit", "short", "long"]))
    if miss == "digit":
        digits = draw(card_digits())
        # Not the issuer's first digit: with a leading 0, "0221…" is a Cologne phone number.
        i = draw(st.integers(1, len(digits) - 1))
        new = draw(st.sampled_from([d for d in string.digits if d != digits[i]]))
        digits = digits[:i] + new + digits[i + 1 :]
    else:
        digits = draw(card_digits(12 if miss == "short" else 20))
    return group_card(digits, draw(st.sampled_from(["", " ", "-"])))


# --- IBANs --------------------------------------------------------------------------------------

_BBAN_SHAPES = {  # country -> BBAN as (alphabet, count) parts
    "DE": ((string.digits, 18),),
    "AT": ((string.digits, 16),),
    "NL": ((string.ascii_uppercase, 4), (string.digits, 10)),
    "GB": ((string.ascii_uppercase, 4), (string.digits, 14)),
    "CH": ((string.digits, 17),),
    "PL": ((string.digits, 24),),
}


@st.composite
def iban_compact(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(sorted(_BBAN_SHAPES)))
    bban = "".join(
        draw(st.text(alphabet=alphabet, min_size=n, max_size=n))
        for alphabet, n in _BBAN_SHAPES[country]
    )
    number = f"{country}00{bban}"
    return f"{country}{iban.calc_check_digits(number)}{bban}"


@st.composite
def ibans(draw: st.DrawFn) -> str:
    compact = draw(iban_compact().filter(iban.is_valid))
    return iban.format(compact) if draw(st.booleans()) else compact


@st.composite
def iban_near_misses(draw: st.DrawFn) -> str:
    """A digit of the account changed or the check digits wrong (mod 97 catches both), or a
    character short; written compact."""
    compact = draw(iban_compact().filter(iban.is_valid))
    miss = draw(st.sampled_from(["digit", "check", "short"]))
    if miss == "short":
        return compact[:-1]
    positions = [i for i, c in enumerate(compact) if c.isdigit() and (i >= 4) == (miss == "digit")]
    i = draw(st.sampled_from(positions))
    new = draw(st.sampled_from([d for d in string.digits if d != compact[i]]))
    return compact[:i] + new + compact[i + 1 :]


# --- e-mail and IP addresses --------------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = draw(st.from_regex(r"[a-z0-9](?:[a-z0-9_+-]{0,12}[a-z0-9])?", fullmatch=True))
    if draw(st.booleans()):
        local += "." + draw(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True))
    labels = draw(st.lists(_label, min_size=1, max_size=3))
    tld = draw(st.sampled_from(["com", "de", "cn", "org", "io", "com.cn", "co.uk"]))
    address = f"{local}@{'.'.join(labels)}.{tld}"
    return address.upper() if draw(st.integers(0, 5)) == 0 else address


ipv4_addresses = st.ip_addresses(v=4).map(str)
ipv6_addresses = (
    st.ip_addresses(v=6)
    .filter(lambda a: str(a) != "::")  # a bare "::" is punctuation, not an address
    .flatmap(lambda a: st.sampled_from([str(a), a.exploded]))
)


@st.composite
def ip_near_misses(draw: st.DrawFn) -> str:
    """An octet over 255, five parts (a version string), three parts, nine IPv6 groups."""
    octets = draw(st.lists(st.integers(0, 255).map(str), min_size=4, max_size=4))
    miss = draw(st.sampled_from(["octet", "five", "three", "ipv6"]))
    if miss == "octet":
        i = draw(st.integers(0, 3))
        octets[i] = str(draw(st.integers(256, 999)))
        return ".".join(octets)
    if miss == "five":
        return ".".join([*octets, draw(st.integers(0, 255).map(str))])
    if miss == "three":
        return ".".join(octets[:3])
    groups = draw(st.lists(st.from_regex(r"[0-9a-f]{1,4}", fullmatch=True), min_size=9, max_size=9))
    return ":".join(groups)
