"""Output moderation: the answer is checked before anything is stored or sent.

``block`` replaces it with the tenant's safe answer (``route: "moderation"``), ``mask`` stars the
words, ``flag`` lets it pass marked. The job's ``moderation`` field says what the last stage that
found something found: the answer's check when it flagged, else the question's (the worker's input
moderation), else the answer's clean result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.knowledge.text import detect_language
from shared.messaging.schemas import InferenceOutcome, Route
from shared.metrics import observe_moderation
from shared.tenant_safety import TenantSafety


@dataclass(frozen=True)
class CheckedAnswer:
    response: str | None
    route: Route | None
    moderation: dict[str, Any] | None


def moderate_answer(safety: TenantSafety, query: str, outcome: InferenceOutcome) -> CheckedAnswer:
    found_on_input = outcome.moderation
    if outcome.route == "moderation":
        # the worker already answered with the safe answer
        return CheckedAnswer(outcome.response, outcome.route, found_on_input)
    lang = detect_language(query)
    result = safety.moderator.check(outcome.response or "", stage="output", lang=lang)
    if result.flagged:
        observe_moderation("output", result.action, result.categories)
        if result.action == "block":
            return CheckedAnswer(safety.safe_answer_for(lang), "moderation", result.as_job_field())
        return CheckedAnswer(result.text, outcome.route, result.as_job_field())
    if found_on_input is not None and found_on_input.get("flagged"):
        return CheckedAnswer(outcome.response, outcome.route, found_on_input)
    return CheckedAnswer(outcome.response, outcome.route, result.as_job_field())
