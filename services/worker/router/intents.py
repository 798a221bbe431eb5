"""Intent recognition: rules first (regular expressions and keywords win when they match),
then similarity to the intent's examples above a threshold. Slots are read from the customer's
words with each slot's pattern; a required slot that is missing is asked for, and the answer to
that question (the next turn) completes the intent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from shared.knowledge.schemas import IntentIn
from shared.knowledge.text import normalize_question
from shared.messaging.schemas import ChatTurn


@dataclass(frozen=True)
class CompiledIntent:
    name: str
    definition: IntentIn
    patterns: tuple[re.Pattern[str], ...]
    keywords: tuple[str, ...]  # normalised
    slot_patterns: dict[str, re.Pattern[str]]
    example_vectors: np.ndarray  # (examples, dim), normalised
    threshold: float

    @classmethod
    def compile(
        cls, name: str, definition: IntentIn, example_vectors: np.ndarray, threshold: float
    ) -> CompiledIntent:
        return cls(
            name=name,
            definition=definition,
            # rules are written by people for people: case should not matter
            patterns=tuple(re.compile(p, re.IGNORECASE) for p in definition.patterns),
            keywords=tuple(normalize_question(k) for k in definition.keywords if k.strip()),
            slot_patterns={
                slot: re.compile(spec.pattern, re.IGNORECASE)
                for slot, spec in definition.slots.items()
            },
            example_vectors=example_vectors,
            threshold=definition.threshold or threshold,
        )

    @property
    def title(self) -> str:
        return self.definition.description or self.name

    def fixed_answers(self) -> set[str]:
        """The answers this intent always gives word for word (a template or handoff answer
        without slots), in each language."""
        handler = self.definition.handler
        if handler.type == "http":
            return set()
        return {t for t in (handler.answer.en, handler.answer.zh) if t and "{" not in t}

    def rule_matches(self, text: str) -> bool:
        if any(pattern.search(text) for pattern in self.patterns):
            return True
        normalised = normalize_question(text)
        return any(keyword in normalised for keyword in self.keywords)

    def similarity(self, vector: np.ndarray) -> float:
        if not len(self.example_vectors):
            return 0.0
        return float(np.max(self.example_vectors @ vector))

    def read_slots(self, text: str) -> dict[str, str]:
        slots = {}
        for slot, pattern in self.slot_patterns.items():
            found = pattern.search(text)
            if found:
                slots[slot] = (found.group(1) if pattern.groups else found.group(0)).strip()
        return slots

    @property
    def missing_required(self) -> list[str]:
        return [slot for slot, spec in self.definition.slots.items() if spec.required]


@dataclass(frozen=True)
class RecognisedIntent:
    intent: CompiledIntent
    confidence: float
    slots: dict[str, str] = field(default_factory=dict)
    matched_by: str = "similarity"  # rule | similarity | follow-up

    @property
    def missing_slots(self) -> list[str]:
        return [s for s in self.intent.missing_required if s not in self.slots]


def _best(
    intents: Sequence[CompiledIntent], text: str, vector: np.ndarray | None
) -> RecognisedIntent | None:
    for intent in intents:
        if intent.rule_matches(text):
            return RecognisedIntent(intent, 1.0, intent.read_slots(text), "rule")
    if vector is None:
        return None
    scored = [(intent.similarity(vector), intent) for intent in intents]
    scored = [(score, intent) for score, intent in scored if score >= intent.threshold]
    if not scored:
        return None
    score, intent = max(scored, key=lambda pair: pair[0])
    return RecognisedIntent(intent, round(score, 4), intent.read_slots(text), "similarity")


def recognise(
    intents: Sequence[CompiledIntent],
    query: str,
    query_vector: np.ndarray | None,
    history: Sequence[ChatTurn],
    previous_user_vector: np.ndarray | None = None,
) -> RecognisedIntent | None:
    """The intent of ``query``, or ``None``.

    A query that only supplies a missing slot ("20261234" after "where is my order?" was
    answered with a request for the number) continues the previous turn's intent.
    """
    if not intents:
        return None
    found = _best(intents, query, query_vector)
    previous = previous_user_turn(history)
    if found is not None:
        if found.missing_slots and previous is not None:
            # the number may have been given a turn earlier: "my order is 20261234" → "where?"
            earlier = found.intent.read_slots(previous)
            merged = {**earlier, **found.slots}
            found = RecognisedIntent(found.intent, found.confidence, merged, found.matched_by)
        return found
    if previous is None:
        return None
    before = _best(intents, previous, previous_user_vector)
    if before is None or not before.missing_slots:
        return None
    supplied = before.intent.read_slots(query)
    if not any(slot in supplied for slot in before.missing_slots):
        return None
    return RecognisedIntent(
        before.intent, before.confidence, {**before.slots, **supplied}, "follow-up"
    )


def previous_user_turn(history: Sequence[ChatTurn]) -> str | None:
    """The customer's last message before this one, if any."""
    return _last_turn(history, "user")


def previous_answer(history: Sequence[ChatTurn]) -> str | None:
    """What the customer was told last, if anything."""
    return _last_turn(history, "assistant")


def _last_turn(history: Sequence[ChatTurn], role: str) -> str | None:
    for turn in reversed(history):
        if turn.role == role:
            return turn.content
    return None
