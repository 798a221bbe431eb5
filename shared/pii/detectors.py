"""Detectors for the kinds of personal data that have a fixed shape and, mostly, a checksum.

Each detector finds candidates with a loose regex and keeps only those that validate (Luhn,
ISO 7064 MOD 11-2, mod 97, ``ipaddress``), so order numbers, dates, prices and version strings
stay readable. The regexes use ASCII look-arounds instead of ``\\b``: in Python, a Chinese
character is a word character, so ``\\b`` never separates ``手机是13812345678谢谢``.

Every detector reads text whose full-width forms were folded to ASCII (``to_halfwidth``), one
character for one, so the offsets are those of the original text.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import dataclass
from typing import Final

from stdnum import iban, luhn
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

# Lower rank = more specific: it wins when two candidates cover the same characters.
RANKS: Final[dict[str, int]] = {
    "CN_ID": 0,
    "IBAN": 1,
    "BANK_CARD": 2,
    "EMAIL": 3,
    "IP": 4,
    "CUSTOM": 5,
    "PHONE": 6,
}

# Full-width digits, letters and the characters numbers and addresses are written with, as
# Chinese input methods type them: "１３８１２３４５６７８" is the same phone number. Not the
# full-width colon or comma: "IP：::1" must keep its colon apart from the address.
_HALFWIDTH = {
    ord(wide): ord(wide) - 0xFEE0
    for wide in "０１２３４５６７８９＋＠．－（）＿"
    + "".join(chr(c) for c in range(0xFF21, 0xFF3B))
    + "".join(chr(c) for c in range(0xFF41, 0xFF5B))
} | {0x3000: 0x20}


def to_halfwidth(text: str) -> str:
    """Fold full-width digits, letters and number punctuation to ASCII, one character for one,
    so offsets do not move."""
    return text.translate(_HALFWIDTH)


@dataclass(frozen=True)
class Candidate:
    """A validated match: where it is, what it is, and the value its placeholder is keyed on."""

    kind: str
    start: int
    end: int
    canonical: str
    rank: int


def _candidate(
    kind: str, match: re.Match[str], canonical: str, end: int | None = None
) -> Candidate:
    return Candidate(
        kind, match.start(), match.end() if end is None else end, canonical, RANKS[kind]
    )


_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    r"(?![A-Za-z0-9\-])"
)


def find_emails(text: str) -> list[Candidate]:
    if "@" not in text:  # the regex would otherwise walk every word looking for one
        return []
    return [_candidate("EMAIL", m, m.group().casefold()) for m in _EMAIL.finditer(text)]


# 18 characters: 6-digit region, birth date YYYYMMDD, 3-digit sequence, check digit (0-9 or X);
# the region-date-sequence split is sometimes written with spaces.
_CN_ID = re.compile(
    r"(?<![0-9A-Za-z])[1-9][0-9]{5}[ \-]?(?:18|19|20)[0-9]{6}[ \-]?[0-9]{3}[0-9Xx](?![0-9A-Za-z])"
)


def is_cn_resident_id(compact: str) -> bool:
    """Checksum (ISO 7064 MOD 11-2) and a birth date that exists and is not in the future.

    stdnum's ``ric.validate`` also looks the region code up in its table of counties; that
    table lags behind renamed and new counties, and an ID missed is worse than an ID
    over-redacted, so only the checksum and the date decide.
    """
    if len(compact) != 18 or ric.calc_check_digit(compact) != compact[-1].upper():
        return False
    try:
        born = ric.get_birth_date(compact)
    except ValidationError:
        return False
    return datetime.date(1880, 1, 1) <= born <= datetime.date.today()


def find_cn_ids(text: str) -> list[Candidate]:
    found = []
    for m in _CN_ID.finditer(text):
        compact = m.group().replace(" ", "").replace("-", "").upper()
        if is_cn_resident_id(compact):
            found.append(_candidate("CN_ID", m, compact))
    return found


# A maximal run of digit groups joined by single spaces or dashes, not glued to letters or
# digits on either side (so never the inside of a longer number, an IBAN or a UUID), and not
# after a '+' (that is a phone number's country code).
_DIGIT_RUN = re.compile(
    r"(?<![0-9A-Za-z+])(?<![0-9][ \-])[0-9]+(?:[ \-][0-9]+)*(?![0-9A-Za-z])(?![ \-][0-9])"
)


def _card_grouping(groups: list[str]) -> bool:
    """How card numbers are written: unbroken, in fours (the last group shorter), or 4-6-5/4-6-4.

    Other groupings (2-3-4-4 is "+86 138 1234 5678") are phone numbers or dates, not cards.
    """
    lengths = [len(g) for g in groups]
    if len(lengths) == 1:
        return True
    if all(n == 4 for n in lengths[:-1]) and 1 <= lengths[-1] <= 4:
        return True
    return lengths in ([4, 6, 5], [4, 6, 4])


def find_bank_cards(text: str) -> list[Candidate]:
    found = []
    for m in _DIGIT_RUN.finditer(text):
        groups = re.split(r"[ \-]", m.group())
        digits = "".join(groups)
        if 13 <= len(digits) <= 19 and _card_grouping(groups) and luhn.is_valid(digits):
            found.append(_candidate("BANK_CARD", m, digits))
    return found


# Country code, two check digits, 11-30 letters or digits, optionally in groups with spaces.
_IBAN = re.compile(r"(?<![0-9A-Za-z])[A-Za-z]{2}[0-9]{2}(?: ?[0-9A-Za-z]){11,30}(?![0-9A-Za-z])")


_IBAN_LETTER_VALUES = str.maketrans({chr(ord("A") + i): str(10 + i) for i in range(26)})


def _mod97_holds(compact: str) -> bool:
    """The ISO 7064 mod 97-10 check alone: a few microseconds, where stdnum's full validation
    (country formats from its database) costs tens; most candidates fail here."""
    rearranged = compact[4:] + compact[:4]
    if not rearranged.isalnum() or not rearranged.isascii():
        return False
    return int(rearranged.translate(_IBAN_LETTER_VALUES)) % 97 == 1


def find_ibans(text: str) -> list[Candidate]:
    found = []
    for m in _IBAN.finditer(text):
        # The regex may have run on into the next words ("… 0130 00 AB12"); try the longest
        # prefix that ends at a space first.
        raw = m.group()
        ends = [len(raw)] + [i for i in range(len(raw) - 1, 0, -1) if raw[i] == " "]
        for end in ends:
            compact = raw[:end].replace(" ", "").upper()
            if len(compact) >= 15 and _mod97_holds(compact) and iban.is_valid(compact):
                found.append(_candidate("IBAN", m, compact, end=m.start() + end))
                break
    return found


_IPV4 = re.compile(r"(?<![0-9A-Za-z.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9A-Za-z]|\.[0-9])")
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?"
    r"(?![0-9A-Za-z:]|\.[0-9])"
)
_HEX_DIGIT = re.compile(r"[0-9A-Fa-f]")


def find_ip_addresses(text: str) -> list[Candidate]:
    found = []
    if "." in text:
        for m in _IPV4.finditer(text):
            try:
                address = ipaddress.IPv4Address(m.group())
            except ValueError:  # 999.1.1.1, 01.2.3.4
                continue
            found.append(_candidate("IP", m, str(address)))
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            if not _HEX_DIGIT.search(m.group()):  # a bare "::" is punctuation, not an address
                continue
            try:
                address6 = ipaddress.IPv6Address(m.group())
            except ValueError:  # 12:30:45, MAC addresses
                continue
            found.append(_candidate("IP", m, str(address6)))
    return found
