"""Find personal data in a message and replace it with typed, consistent placeholders."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence

from shared.pii.detectors import (
    RANKS,
    Candidate,
    find_bank_cards,
    find_cn_ids,
    find_emails,
    find_ibans,
    find_ip_addresses,
    to_halfwidth,
)
from shared.pii.patterns import PiiPattern, PiiSpan
from shared.pii.phones import PhoneDetector
from shared.pii.placeholders import PlaceholderMap

_FIXED_SHAPE_DETECTORS: tuple[Callable[[str], list[Candidate]], ...] = (
    find_emails,
    find_cn_ids,
    find_bank_cards,
    find_ibans,
    find_ip_addresses,
)
# Every built-in kind holds a digit, an '@' (full-width too) or, for IPv6 written in letters
# only, a '::'; a text with none of them is checked against the tenant's patterns only.
_ANY_DIGIT = re.compile(r"[0-9\uff10-\uff19]")
# Regions whose national numbers are always read, whatever the default (issue 8: Chinese
# mobiles and German numbers).
_ALWAYS_READ_REGIONS = ("CN", "DE")


class Anonymizer:
    """Finds e-mail addresses, phone numbers, Chinese resident IDs, bank cards, IBANs, IP
    addresses and the tenant's own patterns, and replaces them with ``<KIND_n>``.

    Where candidates overlap, the longest wins, and between equally long ones the most
    specific (a checksummed ID over a card over a phone), so an 18-digit ID is never also a
    phone number. Thread-safe: it holds no state between calls.
    """

    def __init__(self, patterns: Sequence[PiiPattern] = (), *, default_region: str = "CN") -> None:
        for pattern in patterns:
            if not isinstance(pattern, PiiPattern):
                raise TypeError(f"patterns must be PiiPattern instances, not {type(pattern)}")
        self._patterns = tuple((p.kind, re.compile(p.regex)) for p in patterns)
        region = default_region.upper()
        self._phones = PhoneDetector((region, *_ALWAYS_READ_REGIONS))

    def find(self, text: str) -> list[PiiSpan]:
        """Non-overlapping spans of personal data in ``text``, sorted by position."""
        return [PiiSpan(c.kind, c.start, c.end) for c in self._detect(text)]

    def anonymize(self, text: str, placeholders: PlaceholderMap) -> str:
        """``text`` with every span replaced by its placeholder from ``placeholders``.

        The map learns the new values, so later messages of the conversation reuse them.
        """
        parts: list[str] = []
        position = 0
        for candidate in self._detect(text):
            parts.append(text[position : candidate.start])
            parts.append(placeholders.placeholder_for(candidate.kind, candidate.canonical))
            position = candidate.end
        parts.append(text[position:])
        return "".join(parts)

    def _detect(self, text: str) -> list[Candidate]:
        candidates: list[Candidate] = []
        if _ANY_DIGIT.search(text) or "@" in text or "\uff20" in text or "::" in text:
            ascii_text = to_halfwidth(text)
            for detector in _FIXED_SHAPE_DETECTORS:
                candidates.extend(detector(ascii_text))
            taken = [(c.start, c.end) for c in candidates]
            candidates.extend(self._phones.find(ascii_text, taken))
        for kind, regex in self._patterns:
            candidates.extend(
                Candidate(kind, m.start(), m.end(), m.group(), RANKS["CUSTOM"])
                for m in regex.finditer(text)
                if m.end() > m.start()
            )
        return _without_overlaps(candidates)


def _without_overlaps(candidates: list[Candidate]) -> list[Candidate]:
    """Keep the longest, then the most specific, of candidates that share characters."""
    chosen: list[Candidate] = []  # sorted by start, never overlapping
    starts: list[int] = []
    for candidate in sorted(candidates, key=lambda c: (c.start - c.end, c.rank, c.start)):
        i = bisect.bisect_left(starts, candidate.start)
        if i < len(chosen) and chosen[i].start < candidate.end:
            continue  # overlaps the next chosen span
        if i > 0 and chosen[i - 1].end > candidate.start:
            continue  # overlaps the previous one
        chosen.insert(i, candidate)
        starts.insert(i, candidate.start)
    return chosen
