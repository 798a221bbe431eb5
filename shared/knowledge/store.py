"""Reading and writing a tenant's knowledge: documents (chunked on write), FAQ entries, intents
and settings. The API and the CLI both write through here.

Every change bumps the tenant's ``knowledge_version`` and drops its cached answers in the same
transaction as the change itself: the next job a worker takes sees either the old knowledge or
the new, never a mix, and never an answer cached from the old.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from shared.db.engine import session_scope
from shared.db.models import (
    AnswerCacheEntry,
    FaqEntry,
    IntentDefinitionRow,
    KbChunk,
    KbDocument,
    Tenant,
    utcnow,
)
from shared.knowledge.chunking import chunk_document
from shared.knowledge.schemas import DocumentIn, FaqIn, IntentIn, TenantSettings
from shared.knowledge.text import detect_language


class UnknownTenantError(LookupError):
    pass


def ensure_tenant(session: Session, name: str) -> Tenant:
    """The tenant called ``name``, created (with default settings) if it does not exist."""
    name = name.strip()
    if not name:
        raise ValueError("a tenant needs a name")
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name, settings={}, knowledge_version=1)
        session.add(tenant)
        session.flush()
    return tenant


def tenant_by_name(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name.strip()))
    if tenant is None:
        raise UnknownTenantError(f"no tenant named {name!r} (`chatq keys create --name` makes one)")
    return tenant


def knowledge_changed(session: Session, tenant_id: uuid.UUID) -> None:
    """Start a new knowledge version: workers re-index, cached answers are gone."""
    session.execute(
        update(Tenant)
        .where(Tenant.id == tenant_id)
        .values(knowledge_version=Tenant.knowledge_version + 1, updated_at=utcnow())
    )
    session.execute(delete(AnswerCacheEntry).where(AnswerCacheEntry.tenant_id == tenant_id))


# --- documents --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredDocument:
    document: KbDocument
    chunks: int
    created: bool


def put_document(
    session: Session, tenant_id: uuid.UUID, external_id: str, document: DocumentIn
) -> StoredDocument:
    """Create or replace a document and its chunks."""
    chunks = chunk_document(document.title.strip(), document.text)
    if not chunks:
        raise ValueError("the document has no text to index")
    lang = document.lang or detect_language(document.title + "\n" + document.text)
    row = session.scalar(
        select(KbDocument)
        .where(KbDocument.tenant_id == tenant_id, KbDocument.external_id == external_id)
        .with_for_update()
    )
    created = row is None
    now = utcnow()
    if row is None:
        row = KbDocument(tenant_id=tenant_id, external_id=external_id, created_at=now)
        session.add(row)
    else:
        session.execute(delete(KbChunk).where(KbChunk.document_id == row.id))
    row.title = document.title.strip()
    row.text = document.text
    row.lang = lang
    row.updated_at = now
    session.flush()
    session.add_all(
        KbChunk(
            document_id=row.id,
            tenant_id=tenant_id,
            position=chunk.position,
            heading=chunk.heading,
            text=chunk.text,
            lang=document.lang or detect_language(chunk.text),
        )
        for chunk in chunks
    )
    knowledge_changed(session, tenant_id)
    session.flush()
    return StoredDocument(row, len(chunks), created)


def get_document(session: Session, tenant_id: uuid.UUID, external_id: str) -> KbDocument | None:
    return session.scalar(
        select(KbDocument).where(
            KbDocument.tenant_id == tenant_id, KbDocument.external_id == external_id
        )
    )


def count_chunks(session: Session, document_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not document_ids:
        return {}
    rows = session.execute(
        select(KbChunk.document_id, func.count())
        .where(KbChunk.document_id.in_(document_ids))
        .group_by(KbChunk.document_id)
    ).all()
    return {document_id: count for document_id, count in rows}


def list_documents(
    session: Session, tenant_id: uuid.UUID, *, limit: int, after: str | None
) -> list[KbDocument]:
    """A page of documents ordered by id; ``after`` is the last id of the previous page."""
    query = select(KbDocument).where(KbDocument.tenant_id == tenant_id)
    if after:
        query = query.where(KbDocument.external_id > after)
    return list(session.scalars(query.order_by(KbDocument.external_id).limit(limit)))


def delete_document(session: Session, tenant_id: uuid.UUID, external_id: str) -> bool:
    row = get_document(session, tenant_id, external_id)
    if row is None:
        return False
    session.execute(delete(KbChunk).where(KbChunk.document_id == row.id))
    session.delete(row)
    knowledge_changed(session, tenant_id)
    return True


# --- FAQ --------------------------------------------------------------------------------------


def put_faq(
    session: Session, tenant_id: uuid.UUID, external_id: str, entry: FaqIn
) -> tuple[FaqEntry, bool]:
    row = session.scalar(
        select(FaqEntry)
        .where(FaqEntry.tenant_id == tenant_id, FaqEntry.external_id == external_id)
        .with_for_update()
    )
    created = row is None
    now = utcnow()
    if row is None:
        row = FaqEntry(tenant_id=tenant_id, external_id=external_id, created_at=now)
        session.add(row)
    row.question = entry.question.strip()
    row.answer = entry.answer.strip()
    row.alternatives = [alternative.strip() for alternative in entry.alternatives]
    row.lang = entry.lang or detect_language(entry.question)
    row.embeddings = None  # the wordings changed: the next worker embeds them again
    row.embedding_model = None
    row.updated_at = now
    knowledge_changed(session, tenant_id)
    session.flush()
    return row, created


def get_faq(session: Session, tenant_id: uuid.UUID, external_id: str) -> FaqEntry | None:
    return session.scalar(
        select(FaqEntry).where(FaqEntry.tenant_id == tenant_id, FaqEntry.external_id == external_id)
    )


def list_faq(
    session: Session, tenant_id: uuid.UUID, *, limit: int, after: str | None
) -> list[FaqEntry]:
    query = select(FaqEntry).where(FaqEntry.tenant_id == tenant_id)
    if after:
        query = query.where(FaqEntry.external_id > after)
    return list(session.scalars(query.order_by(FaqEntry.external_id).limit(limit)))


def delete_faq(session: Session, tenant_id: uuid.UUID, external_id: str) -> bool:
    # a DELETE's result is a CursorResult, which Session.execute's typing does not say
    deleted = cast(
        CursorResult[Any],
        session.execute(
            delete(FaqEntry).where(
                FaqEntry.tenant_id == tenant_id, FaqEntry.external_id == external_id
            )
        ),
    ).rowcount
    if deleted:
        knowledge_changed(session, tenant_id)
    return bool(deleted)


# --- intents ----------------------------------------------------------------------------------


def put_intent(
    session: Session, tenant_id: uuid.UUID, name: str, intent: IntentIn
) -> tuple[IntentDefinitionRow, bool]:
    row = session.scalar(
        select(IntentDefinitionRow)
        .where(IntentDefinitionRow.tenant_id == tenant_id, IntentDefinitionRow.name == name)
        .with_for_update()
    )
    created = row is None
    now = utcnow()
    if row is None:
        row = IntentDefinitionRow(tenant_id=tenant_id, name=name, created_at=now)
        session.add(row)
    row.definition = intent.model_dump(mode="json", exclude_none=True)
    row.updated_at = now
    knowledge_changed(session, tenant_id)
    session.flush()
    return row, created


def get_intent(session: Session, tenant_id: uuid.UUID, name: str) -> IntentDefinitionRow | None:
    return session.scalar(
        select(IntentDefinitionRow).where(
            IntentDefinitionRow.tenant_id == tenant_id, IntentDefinitionRow.name == name
        )
    )


def list_intents(session: Session, tenant_id: uuid.UUID) -> list[IntentDefinitionRow]:
    return list(
        session.scalars(
            select(IntentDefinitionRow)
            .where(IntentDefinitionRow.tenant_id == tenant_id)
            .order_by(IntentDefinitionRow.name)
        )
    )


def delete_intent(session: Session, tenant_id: uuid.UUID, name: str) -> bool:
    deleted = cast(
        CursorResult[Any],
        session.execute(
            delete(IntentDefinitionRow).where(
                IntentDefinitionRow.tenant_id == tenant_id, IntentDefinitionRow.name == name
            )
        ),
    ).rowcount
    if deleted:
        knowledge_changed(session, tenant_id)
    return bool(deleted)


# --- settings ---------------------------------------------------------------------------------


def put_settings(session: Session, tenant_id: uuid.UUID, settings: TenantSettings) -> Tenant:
    tenant = session.get(Tenant, tenant_id, with_for_update=True)
    if tenant is None:
        raise UnknownTenantError(f"no tenant {tenant_id}")
    tenant.settings = settings.model_dump(mode="json", exclude_none=True)
    knowledge_changed(session, tenant_id)
    session.flush()
    session.refresh(tenant)
    return tenant


def tenant_summary(session: Session, tenant: Tenant) -> dict[str, Any]:
    documents = session.scalar(
        select(func.count()).select_from(KbDocument).where(KbDocument.tenant_id == tenant.id)
    )
    faq = session.scalar(
        select(func.count()).select_from(FaqEntry).where(FaqEntry.tenant_id == tenant.id)
    )
    intents = session.scalar(
        select(func.count())
        .select_from(IntentDefinitionRow)
        .where(IntentDefinitionRow.tenant_id == tenant.id)
    )
    return {
        "name": tenant.name,
        "settings": TenantSettings.model_validate(tenant.settings).model_dump(mode="json"),
        "knowledge_version": tenant.knowledge_version,
        "documents": documents,
        "faq": faq,
        "intents": intents,
    }


def configure_tenant(database_url: str, name: str, settings: TenantSettings) -> None:
    """Set a tenant's routing settings (created if needed), in a transaction of its own."""
    with session_scope(database_url) as session:
        put_settings(session, ensure_tenant(session, name).id, settings)
