"""What the customer was told last, traced back to the tenant's own words.

A follow-up often asks about one detail of the previous answer ("it already shipped yesterday
though" after the cancellation policy). Saying that sentence again is safe only when it is the
tenant's: an FAQ answer, an intent's fixed answer, or sentences of its documents; never the
model's words or the fallback, which nothing vouches for.

The previous answer comes back from the stored transcript anonymised: the shop's own phone
number and e-mail address in it are ``<PHONE_1>``, ``<EMAIL_1>`` there. So an answer is
compared with placeholders standing for any text, and the sentences said again are the
tenant's originals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.worker.knowledge.extractive import passage_sentences
from services.worker.router.tenant_knowledge import TenantKnowledge
from shared.messaging.schemas import Route, Source
from shared.pii.placeholders import PLACEHOLDER


@dataclass(frozen=True)
class Told:
    """The tenant's sentences the customer was told, and where they came from."""

    sentences: list[str]
    route: Route
    source: Source | None  # None: document sentences, each named by its own chunk


def normalised(text: str) -> str:
    """``text`` as compared for repetition: whitespace-insensitive."""
    return " ".join(text.split())


def _masked_pattern(said: str) -> re.Pattern[str]:
    """``said`` as a pattern in which each anonymisation placeholder matches any text."""
    said = normalised(said)
    parts, last = [], 0
    for placeholder in PLACEHOLDER.finditer(said):
        parts += [re.escape(said[last : placeholder.start()]), ".+?"]
        last = placeholder.end()
    parts.append(re.escape(said[last:]))
    return re.compile("".join(parts))


def _told_from(pattern: re.Pattern[str], answer: str) -> list[str]:
    """The sentences of ``answer`` that were said: all of them, or the one sentence said
    again after an earlier follow-up; none when it was not this answer."""
    sentences = passage_sentences(answer)
    if pattern.fullmatch(normalised(answer)):
        return sentences
    return [s for s in sentences if pattern.fullmatch(normalised(s))][:1]


def trace_told(tenant: TenantKnowledge, said: str) -> Told | None:
    """The tenant's own sentences behind ``said`` (as stored: perhaps anonymised), or None
    when it is not the tenant's words: a whole FAQ or fixed intent answer, one sentence of
    one (said again for an earlier follow-up), or sentences of the documents."""
    pattern = _masked_pattern(said)
    for entry in tenant.faq:
        told = _told_from(pattern, entry.answer)
        if told:
            source = Source(kind="faq", id=entry.faq_id, title=entry.question, score=0.0)
            return Told(told, "faq", source)
    for intent in tenant.intents:
        for answer in intent.fixed_answers():
            told = _told_from(pattern, answer)
            if told:
                source = Source(kind="intent", id=intent.name, title=intent.title, score=0.0)
                return Told(told, "rule", source)
    sentences = passage_sentences(said)
    known = [s for s in sentences if s in tenant.sentence_chunks]
    # a masked sentence cannot be checked; every other one must be the documents'
    if known and all(s in tenant.sentence_chunks or PLACEHOLDER.search(s) for s in sentences):
        return Told(known, "knowledge", None)
    return None
