"""Aho-Corasick over normalised term lists: every entry found in one pass, then checked.

A candidate found by the automaton counts only if

- an entry that begins (ends) with a Latin letter or digit has no Latin letter or digit right
  before (after) it: "ass" is not in "class", "cunt" not in "Scunthorpe" — compounds count only
  when listed ("motherfucker");
- every run of one letter in the text is at least as long as in the entry ("ass" needs "ss",
  so the word "as" is not it, but "asssss" is); a Chinese character doubled is a word of its own
  ("妈妈"), so only three or more count as a repeat;
- it does not overlap an allow-term found in the same text ("操作" keeps "操…" terms off
  "操作系统"; a tenant's "Scunthorpe Ltd").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import ahocorasick

from shared.moderation.normalise import Normalised, is_han, is_latin_word_char, normalise_term
from shared.moderation.policy import Severity
from shared.moderation.terms import TermList


@dataclass(frozen=True, slots=True)
class TermMatch:
    """A list entry found in the text; ``start``/``end`` index the ORIGINAL text."""

    start: int
    end: int
    term: str
    category: str
    list_name: str
    severity: Severity


@dataclass(frozen=True, slots=True)
class _Entry:
    term: str
    category: str
    list_name: str
    severity: Severity
    runs: tuple[int, ...]
    latin_start: bool
    latin_end: bool
    allow: bool
    han: bool


@dataclass(frozen=True, slots=True)
class Hit:
    """A checked candidate, in the coordinates of the normalised text."""

    start: int
    end: int
    entry: _Entry


def _entry(term: str, lst: TermList, *, allow: bool) -> tuple[str, _Entry] | None:
    normalised = normalise_term(term)
    key = normalised.text
    if not key:
        return None
    entry = _Entry(
        term=term,
        category=lst.category,
        list_name=lst.name,
        severity=lst.severity,
        runs=tuple(normalised.run_length(i) for i in range(len(key))),
        latin_start=is_latin_word_char(key[0]),
        latin_end=is_latin_word_char(key[-1]),
        allow=allow,
        han=any(is_han(char) for char in key),
    )
    return key, entry


class TermMatcher:
    """One automaton over the terms and allow-terms of some lists."""

    def __init__(self, lists: Iterable[TermList]) -> None:
        entries: dict[str, list[_Entry]] = {}
        for lst in lists:
            for term, allow in [(t, False) for t in lst.terms] + [(a, True) for a in lst.allow]:
                made = _entry(term, lst, allow=allow)
                if made is not None:
                    entries.setdefault(made[0], []).append(made[1])
        self.size = len(entries)
        self._automaton: ahocorasick.Automaton | None = None
        if entries:
            automaton = ahocorasick.Automaton()
            for key, found in entries.items():
                automaton.add_word(key, (len(key), tuple(found)))
            automaton.make_automaton()
            self._automaton = automaton

    def scan(self, text: Normalised) -> tuple[list[Hit], list[Hit]]:
        """Candidates that pass the boundary and run-length checks: (terms, allow-terms)."""
        hits: list[Hit] = []
        allowed: list[Hit] = []
        if self._automaton is None or not text.text:
            return hits, allowed
        chars = text.text
        run_length = text.run_length
        last = len(chars) - 1
        for end_index, (length, found) in self._automaton.iter(chars):
            start = end_index - length + 1
            before_is_word = start > 0 and is_latin_word_char(chars[start - 1])
            after_is_word = end_index < last and is_latin_word_char(chars[end_index + 1])
            for entry in found:
                if (entry.latin_start and before_is_word) or (entry.latin_end and after_is_word):
                    continue
                if any(
                    run_length(start + i) < need for i, need in enumerate(entry.runs) if need > 1
                ):
                    continue
                if entry.han and _reduplicated(text, start, entry.runs):
                    continue
                (allowed if entry.allow else hits).append(Hit(start, end_index + 1, entry))
        return hits, allowed


def _reduplicated(text: Normalised, start: int, need: tuple[int, ...]) -> bool:
    """A Chinese character written twice is a word of its own (妈妈, 妹妹, 宝宝), not a repeat
    to dodge a filter ("傻逼逼逼" has three): "你妈妈的" is not "你妈的"."""
    return any(
        wanted == 1 and text.run_length(start + i) == 2 and is_han(text.text[start + i])
        for i, wanted in enumerate(need)
    )


def to_matches(text: Normalised, hits: Sequence[Hit], allowed: Sequence[Hit]) -> list[TermMatch]:
    """Hits not overlapping an allow-term, as spans of the original text, one per (span,
    category, severity, list)."""
    spans = [(a.start, a.end) for a in allowed]
    seen: set[tuple[int, int, str, str, str]] = set()
    matches: list[TermMatch] = []
    for hit in hits:
        if any(hit.start < end and start < hit.end for start, end in spans):
            continue
        start, end = text.original_span(hit.start, hit.end)
        entry = hit.entry
        key = (start, end, entry.category, entry.severity, entry.list_name)
        if key in seen:
            continue
        seen.add(key)
        matches.append(
            TermMatch(start, end, entry.term, entry.category, entry.list_name, entry.severity)
        )
    return matches
