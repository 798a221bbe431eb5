"""Moderation of chat text in English and Chinese: lexicons (Aho-Corasick over normalised text),
an English classifier score, per-tenant lists and policies, masking.

    moderator = Moderator.base().with_tenant(tenant_lists, tenant_policy)
    result = moderator.check(text, stage="input", lang="en")
    job["moderation"] = result.as_job_field()
"""

from shared.moderation.matcher import TermMatch
from shared.moderation.moderator import MASK, ModerationResult, Moderator
from shared.moderation.policy import (
    CATEGORIES,
    DEFAULT_POLICY,
    Action,
    ModerationPolicy,
    Severity,
    Stage,
)
from shared.moderation.terms import TermList

__all__ = [
    "CATEGORIES",
    "DEFAULT_POLICY",
    "MASK",
    "Action",
    "ModerationPolicy",
    "ModerationResult",
    "Moderator",
    "Severity",
    "Stage",
    "TermList",
    "TermMatch",
]
