"""Phone numbers, found by Google's libphonenumber metadata (the ``phonenumbers`` package).

``PhoneNumberMatcher`` with leniency VALID accepts only numbers that are valid for their
country (length, prefixes, ranges in use), and it already refuses dates, times and numbers
glued to Latin letters. Numbers written with ``+CC`` are found whatever the region; national
numbers ("0151 23456789", "138 1234 5678") are read once per region, the default first, then
CN and DE.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import phonenumbers
from phonenumbers import Leniency, PhoneNumberFormat, PhoneNumberMatcher

from shared.pii.detectors import RANKS, Candidate

# A run of digits with at most a few separators between them; a phone number is always inside
# one. The matcher is pure Python (~0.25 ms per region and candidate): it only ever sees a few
# characters around such runs, never the prose between them.
_DIGIT_CLUSTER = re.compile(r"[0-9](?:[ ()./\-]{0,3}[0-9])*")
# Fewer digits than "04621 12" (a German small-town number) cannot be a phone number.
_MIN_DIGITS = 7
_CONTEXT = 4  # characters either side, for the '+', '(' and the letter checks of the matcher
# ISO dates (2026-11-28, 2026.11.28, 20261128): the matcher refuses them too, after a parse.
_DATE = re.compile(r"(?:19|20)[0-9]{2}([\-./]?)(?:0[1-9]|1[0-2])\1(?:0[1-9]|[12][0-9]|3[01])")
_NON_DIGITS = re.compile(r"[^0-9]")
# The matcher costs ~0.1 ms per character it reads; a message that is one long run of digits
# ("1 1 1 1 …", a pasted table) must not hold a post-processing worker for seconds. Past this
# many characters of windows, runs of 7-15 digits are replaced without validation.
_MATCHER_BUDGET = 1_500
_PHONE_LENGTH_RUN = re.compile(r"[0-9](?:[ ()./\-]{0,3}[0-9]){6,14}")
# IP addresses and version strings (0.256.0.10, 1.2.3.4.5): Germany's short area codes would
# read some of them as numbers.
_DOTTED = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){2,}")
# Reference numbers glued to a Latin prefix (ORD-20261128-0042, SKU_12345678): identifiers.
_IDENTIFIER_PREFIX = re.compile(r"[A-Za-z][\-_#]")


class PhoneDetector:
    """Finds valid phone numbers; the placeholder key is the number in E.164."""

    def __init__(self, regions: Sequence[str]) -> None:
        unknown = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown phone region(s) {unknown}: use ISO 3166 codes like CN, DE")
        self.regions = tuple(dict.fromkeys(regions))

    def find(self, text: str, taken: Sequence[tuple[int, int]] = ()) -> list[Candidate]:
        """Phone numbers in ``text``; digit runs inside a ``taken`` span (a card, an ID, an
        e-mail address found already, which would win anyway) are not read again."""
        # span -> (preference, e164); the same digits can be valid in two regions
        # ("0151 23456789" is a German mobile and, read as Chinese, a mobile too).
        best: dict[tuple[int, int], tuple[tuple[int, int], str]] = {}
        fallback: list[Candidate] = []
        budget = _MATCHER_BUDGET
        for cluster in _DIGIT_CLUSTER.finditer(text):
            if not _could_be_phone(text, cluster, taken):
                continue
            offset = max(0, cluster.start() - _CONTEXT)
            window = text[offset : cluster.end() + _CONTEXT]
            if len(window) > budget:
                fallback.extend(_unvalidated_numbers(cluster))
                continue
            budget -= len(window)
            self._read(window, offset, cluster, best)
        return fallback + [
            Candidate("PHONE", start, end, e164, RANKS["PHONE"])
            for (start, end), (_, e164) in best.items()
        ]

    def _read(
        self,
        window: str,
        offset: int,
        cluster: re.Match[str],
        best: dict[tuple[int, int], tuple[tuple[int, int], str]],
    ) -> None:
        for order, region in enumerate(self.regions):
            settled = False
            for match in PhoneNumberMatcher(window, region, leniency=Leniency.VALID):
                if len(_NON_DIGITS.sub("", match.raw_string)) < _MIN_DIGITS:
                    continue  # e.g. a German pager code "1640" inside a card number
                span = _without_open_parenthesis(match, offset)
                preference = (_reading_distance(match.raw_string, match.number), order)
                if span not in best or preference < best[span][0]:
                    e164 = phonenumbers.format_number(match.number, PhoneNumberFormat.E164)
                    best[span] = (preference, e164)
                # Written exactly as its own country writes it, over the whole run: the other
                # regions cannot read it better.
                settled = settled or (
                    preference[0] == 0 and span[0] <= cluster.start() and cluster.end() <= span[1]
                )
            if settled:
                return


def _could_be_phone(text: str, cluster: re.Match[str], taken: Sequence[tuple[int, int]]) -> bool:
    run = cluster.group()
    return not (
        len(_NON_DIGITS.sub("", run)) < _MIN_DIGITS
        or _DATE.fullmatch(run)
        or _DOTTED.fullmatch(run)
        or _IDENTIFIER_PREFIX.match(text, max(0, cluster.start() - 2), cluster.start())
        or any(s <= cluster.start() and cluster.end() <= e for s, e in taken)
    )


def _unvalidated_numbers(cluster: re.Match[str]) -> list[Candidate]:
    """Phone-length digit runs in ``cluster``, unchecked: past the matcher's budget, replacing
    a few numbers that are not phones is better than keeping phones in clear."""
    return [
        Candidate(
            "PHONE",
            cluster.start() + m.start(),
            cluster.start() + m.end(),
            _NON_DIGITS.sub("", m.group()),
            RANKS["PHONE"],
        )
        for m in _PHONE_LENGTH_RUN.finditer(cluster.group())
    ]


def _without_open_parenthesis(match: phonenumbers.PhoneNumberMatch, offset: int) -> tuple[int, int]:
    """The span of ``match`` in the text, less a '(' that the number never closes: in
    "（0170 1234567" the parenthesis belongs to the sentence."""
    start = match.start
    if match.raw_string.startswith("(") and ")" not in match.raw_string:
        start += 1
    return offset + start, offset + match.end


def _reading_distance(raw: str, number: phonenumbers.PhoneNumber) -> int:
    """0 when ``raw`` is written the way the number's own country writes it, else 1.

    Breaks ties between regions: "0151 23456789" is exactly how Germany writes +49 151
    23456789, while China would write +86 151 2345 6789 without the leading 0.
    """
    if raw.lstrip("(").startswith("+"):
        return 0
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    return 0 if _NON_DIGITS.sub("", national) == _NON_DIGITS.sub("", raw) else 1
