"""A tenant's safety configuration, ready to use: its moderator (the shipped lists plus its own,
with its actions), its safe answer, and its PII anonymiser (the built-in kinds plus its patterns).

The inference worker moderates questions with it, post-processing moderates answers and
anonymises transcripts. Both keep one per tenant and rebuild it when the tenant's
``knowledge_version`` moves (every change to lists or settings bumps it).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import ModerationList, Tenant
from shared.knowledge.schemas import LocalizedText, TenantSettings
from shared.moderation import DEFAULT_POLICY, ModerationPolicy, Moderator, TermList
from shared.pii import Anonymizer, PiiPattern

DEFAULT_SAFE_ANSWER = LocalizedText(
    en=(
        "I'm sorry, I can't help with that. Please keep our conversation respectful, or contact "
        "our customer service."
    ),
    zh="抱歉，这个问题我无法回答。请文明交流，或联系我们的客服。",
)


@dataclass(frozen=True)
class TenantSafety:
    moderator: Moderator
    anonymizer: Anonymizer
    safe_answer: LocalizedText

    def safe_answer_for(self, lang: str) -> str:
        return self.safe_answer.pick(lang)


def build_tenant_safety(settings: TenantSettings, lists: Sequence[ModerationList]) -> TenantSafety:
    policy = ModerationPolicy(
        actions=dict(DEFAULT_POLICY.actions) | settings.moderation.actions,  # the tenant's win
        classifier_threshold=DEFAULT_POLICY.classifier_threshold,
    )
    term_lists = [
        TermList(
            name=row.name,
            category=row.category,
            terms=tuple(row.terms),
            allow=tuple(row.allow),
        )
        for row in lists
    ]
    return TenantSafety(
        moderator=Moderator.base().with_tenant(term_lists, policy),
        anonymizer=Anonymizer(
            [PiiPattern(name=p.name, regex=p.regex) for p in settings.pii_patterns]
        ),
        safe_answer=settings.moderation.safe_answer or DEFAULT_SAFE_ANSWER,
    )


def load_tenant_safety(session: Session, tenant: Tenant) -> TenantSafety:
    lists = session.scalars(
        select(ModerationList)
        .where(ModerationList.tenant_id == tenant.id)
        .order_by(ModerationList.name)
    ).all()
    return build_tenant_safety(TenantSettings.model_validate(tenant.settings or {}), lists)


class TenantSafetyCache:
    """One ``TenantSafety`` per tenant and knowledge version, for processes that do not keep the
    worker's knowledge registry (post-processing)."""

    def __init__(self) -> None:
        self._entries: dict[uuid.UUID, tuple[int, TenantSafety]] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, tenant: Tenant) -> TenantSafety:
        with self._lock:
            known = self._entries.get(tenant.id)
        if known is not None and known[0] >= tenant.knowledge_version:
            return known[1]
        safety = load_tenant_safety(session, tenant)
        with self._lock:
            self._entries[tenant.id] = (tenant.knowledge_version, safety)
        return safety
