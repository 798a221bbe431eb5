"""The moderator: lexicon (Aho-Corasick, English and Chinese) + the English classifier → the
categories found, the action the tenant's policy gives them, and the text with masks applied."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.knowledge.text import detect_language
from shared.moderation.classifier import ProfanityClassifier
from shared.moderation.matcher import TermMatch, TermMatcher, to_matches
from shared.moderation.normalise import Normalised, normalise_views
from shared.moderation.policy import (
    DEFAULT_POLICY,
    Action,
    ModerationPolicy,
    Stage,
    capped,
    strictest,
)
from shared.moderation.terms import TermList, base_lists

MASK = "***"
MAX_TEXT_CHARS = 200_000
"""Longer texts are checked in their first MAX_TEXT_CHARS characters (a chat turn is far
shorter; the API caps bodies long before)."""
_LATIN_LETTERS = re.compile(r"[A-Za-z]{2}")
_LATIN_LETTER = re.compile(r"[A-Za-z]")
# Speaking to someone turns an offensive score into "abuse" rather than "profanity".
_SECOND_PERSON = re.compile(r"\b(?:you|your|yours|yourself|u|ur|ya|youre|you're|thou)\b", re.I)


@dataclass(frozen=True)
class ModerationResult:
    flagged: bool
    categories: tuple[str, ...]
    """Sorted, distinct."""
    action: Action | None
    """None when not flagged."""
    stage: Stage
    text: str
    """The text to use from now on: the masked spans replaced by ``***`` when action is "mask",
    otherwise the text as given."""
    matches: tuple[TermMatch, ...]
    """Every list entry that counted, as spans of the original text."""
    classifier_score: float | None = None
    """The English classifier's score, None when it did not run (no English in the text)."""

    def as_job_field(self) -> dict[str, Any]:
        """What a job (and its webhook) carries; always a dict, so every job says something."""
        return {
            "flagged": self.flagged,
            "categories": list(self.categories),
            "action": self.action,
            "stage": self.stage,
        }


def _mask(text: str, spans: Sequence[tuple[int, int]]) -> str:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces: list[str] = []
    position = 0
    for start, end in merged:
        pieces.append(text[position:start])
        pieces.append(MASK)
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _without(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` with these spans blanked out."""
    for start, end in spans:
        text = text[:start] + " " * (end - start) + text[end:]
    return text


class Moderator:
    """Build the base once per process (``Moderator.base()``); ``with_tenant`` adds a tenant's
    lists and policy cheaply; ``check`` is thread-safe."""

    _base: Moderator | None = None
    _base_lock = threading.Lock()

    def __init__(
        self,
        matchers: Sequence[TermMatcher],
        classifier: ProfanityClassifier | None,
        policy: ModerationPolicy = DEFAULT_POLICY,
    ) -> None:
        self._matchers = tuple(matchers)
        self._classifier = classifier
        self.policy = policy

    @classmethod
    def from_lists(
        cls,
        lists: Sequence[TermList],
        *,
        classifier: ProfanityClassifier | None = None,
        policy: ModerationPolicy | None = None,
    ) -> Moderator:
        """A moderator over exactly these lists (tests, tools); production uses ``base()``."""
        return cls([TermMatcher(lists)], classifier, policy or DEFAULT_POLICY)

    @classmethod
    def base(cls) -> Moderator:
        """The shipped lists and the English classifier, built once per process."""
        if cls._base is None:
            with cls._base_lock:
                if cls._base is None:
                    cls._base = cls([TermMatcher(base_lists())], ProfanityClassifier())
        return cls._base

    def with_tenant(self, lists: Sequence[TermList], policy: ModerationPolicy | None) -> Moderator:
        """This moderator plus a tenant's lists (a small automaton of its own; the base one is
        shared) and its policy (None: keep this one's)."""
        matchers = self._matchers + ((TermMatcher(lists),) if lists else ())
        return Moderator(matchers, self._classifier, policy or self.policy)

    @property
    def term_count(self) -> int:
        return sum(matcher.size for matcher in self._matchers)

    def check(self, text: str, *, stage: Stage, lang: str | None = None) -> ModerationResult:
        """Moderate ``text``. ``lang`` ("en", "zh", …) says which language the customer was
        writing; None: decided from the text (the classifier runs only over English)."""
        if stage not in ("input", "output"):
            raise ValueError(f"stage must be 'input' or 'output', not {stage!r}")
        checked = text[:MAX_TEXT_CHARS]
        views = normalise_views(checked)
        found, allowed = self._lexicon(views)
        score = self._score(checked, _without(views[0].plain, allowed), lang)
        policy = self.policy

        counted: list[TermMatch] = []
        actions: dict[str, Action] = {}
        for match in found:
            action = policy.action(match.category)
            if match.severity != "severe":
                if _LATIN_LETTER.search(match.term) and score is not None:
                    if score < policy.context_threshold(match.category):
                        continue  # "damn good service": English, and nothing offensive about it
                elif match.severity == "context":
                    continue  # only the English classifier can tell these senses apart
                if match.severity == "mild":
                    action = capped(action, "flag")
            counted.append(match)
            actions[match.category] = (
                strictest([action, actions.get(match.category, action)]) or action
            )
        if score is not None and score >= policy.classifier_threshold:
            category = "abuse" if _SECOND_PERSON.search(checked) else "profanity"
            if category not in actions and not ({"profanity", "abuse"} & actions.keys()):
                actions[category] = "flag"  # a score alone is no proof: mark, never act

        if not actions:
            return ModerationResult(False, (), None, stage, text, tuple(counted), score)
        overall = strictest(actions.values())
        masked = text
        if overall == "mask":
            masked = _mask(
                text,
                [(m.start, m.end) for m in counted if actions[m.category] == "mask"],
            )
        return ModerationResult(
            True, tuple(sorted(actions)), overall, stage, masked, tuple(counted), score
        )

    def _lexicon(
        self, views: Sequence[Normalised]
    ) -> tuple[list[TermMatch], list[tuple[int, int]]]:
        """The matches over every reading of the text, and the allow-terms' spans in the first
        reading's ``plain`` text (the classifier does not score a tenant's brand either)."""
        matches: dict[tuple[int, int, str, str, str], TermMatch] = {}
        allowed_spans: list[tuple[int, int]] = []
        for number, view in enumerate(views):
            hits, allowed = [], []
            for matcher in self._matchers:
                view_hits, view_allowed = matcher.scan(view)
                hits.extend(view_hits)
                allowed.extend(view_allowed)
            for match in to_matches(view, hits, allowed):
                key = (match.start, match.end, match.category, match.severity, match.list_name)
                matches.setdefault(key, match)
            if number == 0:
                allowed_spans = [view.plain_span(hit.start, hit.end) for hit in allowed]
        ordered = sorted(matches.values(), key=lambda m: (m.start, m.end, m.category))
        return ordered, allowed_spans

    def _score(self, text: str, plain: str, lang: str | None) -> float | None:
        """The English classifier's score of the de-obfuscated text; None where the text is not
        English (given, or detected when ``lang`` is None)."""
        if self._classifier is None:
            return None
        if lang is None:
            if not _LATIN_LETTERS.search(plain) or detect_language(text) != "en":
                return None
        elif lang != "en":
            return None
        return self._classifier.score(plain)
