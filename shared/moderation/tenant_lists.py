"""A tenant's own moderation lists: the HTTP/CLI schema and their storage.

A change bumps the tenant's ``knowledge_version`` like any knowledge change: workers and
post-processors rebuild the tenant's moderator when it moves, and cached answers are dropped (one
may hold a word the tenant has just banned).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session

from shared.db.models import ModerationList, utcnow
from shared.knowledge.schemas import EXTERNAL_ID_PATTERN, ModerationCategory
from shared.knowledge.store import knowledge_changed

# list names follow the same rule as knowledge ids
LIST_NAME_PATTERN = EXTERNAL_ID_PATTERN
MAX_TERMS = 10_000
MAX_TERM_CHARS = 200


class ModerationListIn(BaseModel):
    """``PUT /v1/moderation/lists/{name}``: terms of one category, and terms never to flag."""

    model_config = ConfigDict(extra="forbid")

    category: ModerationCategory
    terms: list[str] = Field(min_length=1, max_length=MAX_TERMS)
    allow: list[str] = Field(default_factory=list, max_length=MAX_TERMS)

    @field_validator("terms", "allow")
    @classmethod
    def _clean_terms(cls, terms: list[str]) -> list[str]:
        cleaned: list[str] = []
        for term in terms:
            stripped = term.strip()
            if not stripped:
                raise ValueError("terms must not be empty or blank")
            if len(stripped) > MAX_TERM_CHARS:
                raise ValueError(f"a term is at most {MAX_TERM_CHARS} characters")
            if stripped not in cleaned:
                cleaned.append(stripped)
        return cleaned


def list_view(row: ModerationList) -> dict[str, object]:
    return {
        "name": row.name,
        "object": "moderation.list",
        "category": row.category,
        "terms": list(row.terms),
        "allow": list(row.allow),
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def put_list(
    session: Session, tenant_id: uuid.UUID, name: str, body: ModerationListIn
) -> tuple[ModerationList, bool]:
    row = get_list(session, tenant_id, name)
    created = row is None
    if row is None:
        row = ModerationList(tenant_id=tenant_id, name=name)
        session.add(row)
    row.category = body.category
    row.terms = body.terms
    row.allow = body.allow
    row.updated_at = utcnow()
    knowledge_changed(session, tenant_id)
    session.flush()
    return row, created


def get_list(session: Session, tenant_id: uuid.UUID, name: str) -> ModerationList | None:
    return session.scalar(
        select(ModerationList).where(
            ModerationList.tenant_id == tenant_id, ModerationList.name == name
        )
    )


def list_lists(session: Session, tenant_id: uuid.UUID) -> Sequence[ModerationList]:
    return session.scalars(
        select(ModerationList)
        .where(ModerationList.tenant_id == tenant_id)
        .order_by(ModerationList.name)
    ).all()


def delete_list(session: Session, tenant_id: uuid.UUID, name: str) -> bool:
    # a DELETE's result is a CursorResult, which Session.execute's typing does not say
    deleted = cast(
        CursorResult[Any],
        session.execute(
            delete(ModerationList).where(
                ModerationList.tenant_id == tenant_id, ModerationList.name == name
            )
        ),
    )
    if not deleted.rowcount:
        return False
    knowledge_changed(session, tenant_id)
    return True
