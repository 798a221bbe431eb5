"""Categories, actions and a tenant's policy: which action each category takes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, get_args

Action = Literal["block", "mask", "flag"]
Stage = Literal["input", "output"]
Severity = Literal["severe", "mild", "context"]
"""How much a list entry says on its own:

- ``severe``: it fires wherever it stands, with its category's action;
- ``mild`` ("damn", "hell", "牛逼"): in English it fires only when the classifier agrees the text
  is offensive, and then at most ``flag`` — "damn good service" passes, "what the hell is this"
  is flagged, neither is ever blocked; in other languages (no classifier) it flags;
- ``context`` ("screw", "cock"): an English word with innocent senses that fires, with its
  category's action, only when the classifier agrees; never outside English.
"""

CATEGORIES = ("profanity", "abuse", "sexual", "violence", "self-harm", "politics", "custom")
ACTIONS: tuple[Action, ...] = get_args(Action)
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
_STRICTNESS: dict[Action, int] = {"flag": 0, "mask": 1, "block": 2}


def strictest(actions: Iterable[Action]) -> Action | None:
    """block > mask > flag; None for no actions."""
    return max(actions, key=_STRICTNESS.__getitem__, default=None)


def capped(action: Action, cap: Action) -> Action:
    """``action``, but no stricter than ``cap``."""
    return action if _STRICTNESS[action] <= _STRICTNESS[cap] else cap


_DEFAULT_ACTIONS: dict[str, Action] = {
    "profanity": "mask",  # the sentence is still useful without the word
    "abuse": "block",
    "sexual": "block",
    "violence": "block",
    "self-harm": "block",  # the tenant's safe answer (a helpline, a person), not the model's
    "politics": "flag",  # a shop assistant need not refuse to hear a leader's name
    "custom": "flag",  # a tenant's own list says what it wants in its own policy
}
# Per category, the English classifier score at which a ``mild`` or ``context`` entry fires.
# Measured on examples/moderation/labelled.yaml (see chatq/moderation_eval.py and the note).
_DEFAULT_CONTEXT_THRESHOLDS: dict[str, float] = {
    "profanity": 0.75,
    "abuse": 0.75,
    "sexual": 0.8,
    "violence": 0.8,
    "self-harm": 0.8,
    "politics": 0.9,
    "custom": 0.8,
}


@dataclass(frozen=True)
class ModerationPolicy:
    actions: Mapping[str, Action]
    """Category → action; categories missing here take DEFAULT_POLICY's action."""
    classifier_threshold: float = 0.97
    """English classifier score above which "profanity" (or "abuse", when the text speaks to
    someone) fires without a lexicon hit. Such a finding only flags: a score is no proof."""
    context_thresholds: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType(dict(_DEFAULT_CONTEXT_THRESHOLDS))
    )
    """Category → the English classifier score a ``mild`` or ``context`` entry needs."""

    def __post_init__(self) -> None:
        for category, action in self.actions.items():
            if category not in CATEGORIES:
                raise ValueError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")
            if action not in ACTIONS:
                raise ValueError(f"unknown action {action!r} for {category}; known: {ACTIONS}")
        for category, threshold in self.context_thresholds.items():
            if category not in CATEGORIES:
                raise ValueError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"threshold for {category} must be within [0, 1]")
        if not 0.0 <= self.classifier_threshold <= 1.0:
            raise ValueError("classifier_threshold must be within [0, 1]")
        object.__setattr__(self, "actions", MappingProxyType(dict(self.actions)))

    def action(self, category: str) -> Action:
        return self.actions.get(category) or _DEFAULT_ACTIONS[category]

    def context_threshold(self, category: str) -> float:
        return self.context_thresholds.get(category, _DEFAULT_CONTEXT_THRESHOLDS[category])

    def action_for(self, categories: Iterable[str]) -> Action:
        """The strictest action of these categories (block > mask > flag)."""
        action = strictest(self.action(category) for category in categories)
        if action is None:
            raise ValueError("action_for needs at least one category")
        return action


DEFAULT_POLICY = ModerationPolicy(actions=_DEFAULT_ACTIONS)
