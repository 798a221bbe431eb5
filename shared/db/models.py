"""chatq's tables, one declarative base for all.

Portable types keep SQLite (the embedded default) and Postgres on one schema: ``Uuid`` keys made
in Python, ``JSON`` that becomes ``JSONB`` on Postgres, enums stored by value as strings.
Every change here needs an Alembic revision in ``shared/db/migrations/versions``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

PortableJSON = JSON().with_variant(JSONB(), "postgresql")

# Named constraints make Alembic migrations deterministic across databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class JobStatus(StrEnum):
    """Job states, as in the OpenAI Batch API."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED}
)


class BatchStatus(StrEnum):
    """A batch's states, named as in the OpenAI Batch API. There is no ``validating`` nor
    ``failed``: a batch is validated whole before it is stored, and refused (422) rather than
    stored broken."""

    IN_PROGRESS = "in_progress"
    CANCELLING = "cancelling"  # cancelled: its queued jobs are, its running ones finish first
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (BatchStatus.COMPLETED, BatchStatus.CANCELLED)


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its first or next attempt
    DELIVERED = "delivered"  # a 2xx came back
    DEAD = "dead"  # the schedule ran out, or the receiver answered 410 Gone


def _enum(enum_cls: type[StrEnum], name: str) -> Enum:
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: PortableJSON,
        list[Any]: PortableJSON,
    }


class Tenant(Base):
    """A business: owns API keys, knowledge, FAQ, intents and the answer cache.

    ``knowledge_version`` grows with every change to the tenant's knowledge, FAQ, intents or
    settings: workers rebuild their in-memory index when it moves, and cached answers are keyed
    by it, so a change invalidates them all at once.
    """

    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    knowledge_version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiKey(Base):
    """A business backend's credential. Only the key's SHA-256 is stored."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    key_prefix: Mapped[str] = mapped_column(String(16))  # shown in listings, never enough to use
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The webhook secret must be readable to sign with; it is not a login credential.
    webhook_secret: Mapped[str] = mapped_column(String(100))
    allowed_cidrs: Mapped[list[Any]] = mapped_column(default=list)
    # what the key may do (shared.api_keys.Scope values); keys from before scopes have them all
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    # per-key token bucket; None takes CHATQ_RATE_LIMIT_PER_S / CHATQ_RATE_LIMIT_BURST
    rate_limit_per_s: Mapped[float | None]
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    # set when the key was rotated: it keeps working until then (the grace period)
    expires_at: Mapped[datetime | None]


class RateLimitBucket(Base):
    """A key's token bucket, shared by every API process: one atomic UPDATE takes tokens.
    ``refilled_at`` is Unix time in seconds, so the refill is arithmetic on any database."""

    __tablename__ = "rate_limit_buckets"

    api_key_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    tokens: Mapped[float] = mapped_column()
    refilled_at: Mapped[float] = mapped_column()


class OpenWait(Base):
    """A long-poll or ``/v1/chat`` wait in progress, so a per-key cap holds across processes.
    A process that dies leaves its rows behind; they stop counting at ``expires_at``."""

    __tablename__ = "open_waits"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    api_key_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime] = mapped_column()


class ChatSession(Base):
    """A multi-turn conversation, named by the backend's own ``session_id``. It belongs to the
    tenant, so a conversation goes on across a key rotation."""

    __tablename__ = "sessions"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
    # keyed hash of a personal value -> its placeholder (<PHONE_1>), so the anonymised transcript
    # names the same number the same way in every turn; the values themselves are never stored
    pii_placeholders: Mapped[dict[str, Any] | None]


class Job(Base):
    """One chat request from submission to its terminal state. It belongs to the tenant (every
    key of the tenant sees it); ``api_key_id`` is the key that submitted it, whose secret signs
    its webhooks."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_jobs_api_key_id_created_at", "api_key_id", "created_at"),
        Index("ix_jobs_tenant_id_created_at", "tenant_id", "created_at"),
        Index("ix_jobs_status_created_at", "status", "created_at"),
        # counts a tenant's open jobs outside batches for its share of the queue
        # (services/api/backpressure.py): batch jobs have an allowance of their own
        Index("ix_jobs_tenant_id_status_batch_id", "tenant_id", "status", "batch_id"),
        # a batch's results in submission order
        UniqueConstraint("batch_id", "batch_index"),
        # a batch's counts by status, and whether any of its jobs is still open
        Index("ix_jobs_batch_id_status", "batch_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"))
    query: Mapped[str] = mapped_column(Text)
    history: Mapped[list[Any]] = mapped_column(default=list)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    deadline_at: Mapped[datetime | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))

    response: Mapped[str | None] = mapped_column(Text)
    route: Mapped[str | None] = mapped_column(String(16))
    usage: Mapped[dict[str, Any] | None]
    timings: Mapped[dict[str, Any] | None]
    error: Mapped[dict[str, Any] | None]
    batch_size: Mapped[int | None] = mapped_column(Integer)
    engine: Mapped[dict[str, Any] | None]  # which engine and execution providers answered
    # the model version that generated the answer (``model_versions.name``, or the name of the
    # unregistered model in CHATQ_MODEL_DIR); null when no model ran (FAQ, rules, cache, ...)
    model_version: Mapped[str | None] = mapped_column(String(128))
    sources: Mapped[list[Any] | None]  # the knowledge the answer came from
    intent: Mapped[dict[str, Any] | None]  # the recognised intent: name, confidence, slots
    handoff: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # how often a worker took the job; past the limit it is poison and fails without running
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # what moderation found: {flagged, categories, action, stage}; None before the job finished
    moderation: Mapped[dict[str, Any] | None]
    # set when the job's texts were replaced by their anonymised copy (retention) or erased
    redacted_at: Mapped[datetime | None]
    # the batch the job came in (None: submitted alone), its place there from 0, and the name
    # the caller gave it (``custom_id``; None for the jobs of ``POST /v1/jobs/batch``)
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    batch_index: Mapped[int | None] = mapped_column(Integer)
    custom_id: Mapped[str | None] = mapped_column(String(128))

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    session: Mapped[ChatSession | None] = relationship(lazy="joined")


class Batch(Base):
    """Many jobs submitted together (``POST /v1/batches``, ``POST /v1/jobs/batch``). Its counts
    by status are read from its jobs; it ends (``completed``, or ``cancelled`` after a cancel)
    once the last of them is terminal, and then its ``batch.completed`` event is queued.

    Its jobs are stored with it but reach ``chat.inference`` a few at a time: ``released``
    jobs (in submission order) have been handed to the outbox so far (services/api/batches)."""

    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_batches_tenant_id_created_at", "tenant_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # the key that submitted it: its secret signs the batch's webhook
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    status: Mapped[BatchStatus] = mapped_column(_enum(BatchStatus, "batch_status"), index=True)
    total: Mapped[int] = mapped_column(Integer)
    released: Mapped[int] = mapped_column(Integer, default=0)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelling_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]  # when its last job ended (cancelled batches too)


class Message(Base):
    """One turn of the transcript. ``(job_id, position)`` is unique, so a job's turns are
    written once however often its result is redelivered."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("job_id", "position"),
        Index("ix_messages_session_id_created_at", "session_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(SmallInteger)  # 0: the user's turn, 1: the answer
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one job, or for one batch (``batch.completed``). Its id is the
    ``webhook-id`` header: fixed across retries so receivers can deduplicate."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("job_id", "event_type"),
        UniqueConstraint("batch_id", "event_type"),
        CheckConstraint("(job_id IS NULL) <> (batch_id IS NULL)", name="one_subject"),
        # dead deliveries, newest first: the operator dashboard and chatq status
        Index("ix_webhook_deliveries_status_created_at", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus, "delivery_status"))
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class WebhookAttempt(Base):
    """Every HTTP attempt of a delivery, successful or not."""

    __tablename__ = "webhook_attempts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt_number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[float] = mapped_column()
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class OutboxMessage(Base):
    """An inference request stored with its job, deleted once the broker confirmed it.

    ``next_attempt_at`` is a lease: the API process that stored the row holds it for
    ``CHATQ_OUTBOX_GRACE_S`` while it publishes; after that the relay of any API process may
    take it, pushing the time ahead before it publishes (services/api/outbox.py), so an
    accepted job always reaches the queue.
    """

    __tablename__ = "outbox"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), unique=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column()
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)


class KbDocument(Base):
    """A knowledge document (Markdown or plain text) of a tenant, named by the tenant's id."""

    __tablename__ = "kb_documents"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text)
    lang: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class KbChunk(Base):
    """A retrievable piece of a document. ``embedding`` (float32 bytes) is filled by the first
    worker that indexes it, with the model named in ``embedding_model``."""

    __tablename__ = "kb_chunks"
    __table_args__ = (UniqueConstraint("document_id", "position"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    document_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("kb_documents.id", ondelete="CASCADE")
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    heading: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    lang: Mapped[str | None] = mapped_column(String(8))
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    embedding_model: Mapped[str | None] = mapped_column(String(200))


class FaqEntry(Base):
    """A question with its stored answer; ``alternatives`` are other wordings of the question.
    ``embeddings`` holds one float32 vector per wording (the question first)."""

    __tablename__ = "kb_faq"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(128))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    alternatives: Mapped[list[Any]] = mapped_column(default=list)
    lang: Mapped[str | None] = mapped_column(String(8))
    embeddings: Mapped[bytes | None] = mapped_column(LargeBinary)
    embedding_model: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IntentDefinitionRow(Base):
    """A tenant's intent: examples, rules, slots and a handler (``shared.knowledge.schemas``)."""

    __tablename__ = "intents"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AnswerCacheEntry(Base):
    """A generated or retrieved answer to a normalised question, valid for one knowledge
    version and one model (both are part of ``cache_key``)."""

    __tablename__ = "answer_cache"
    __table_args__ = (UniqueConstraint("tenant_id", "cache_key"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    cache_key: Mapped[str] = mapped_column(String(64))
    knowledge_version: Mapped[int] = mapped_column(Integer)
    answer: Mapped[dict[str, Any]] = mapped_column()  # response, route, sources
    hits: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModerationList(Base):
    """A tenant's own moderation terms in one category (brand names, competitors, local slurs),
    matched beside the shipped lists; ``allow`` holds terms never to flag (its own brand)."""

    __tablename__ = "moderation_lists"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(String(32))
    terms: Mapped[list[Any]] = mapped_column(default=list)
    allow: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Feedback(Base):
    """A caller's judgement of one job's answer: a thumb (``-1``/``+1``) or stars (1–5), a
    comment, and the answer it should have been. One per job: a second one replaces it.
    Preference pairs and SFT rows for training are exported from here (``chatq feedback``)."""

    __tablename__ = "feedback"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), unique=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    rating: Mapped[int] = mapped_column(SmallInteger)
    scale: Mapped[str] = mapped_column(String(8))  # "thumbs" (-1/+1) or "stars" (1-5)
    comment: Mapped[str | None] = mapped_column(Text)
    corrected_answer: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ModelVersion(Base):
    """A model folder the workers may serve (``chatq models``). The active version is the one
    activated last (``activated_at``); with none active, workers serve CHATQ_MODEL_DIR."""

    __tablename__ = "model_versions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    # a chatq model folder (shared/model_layout.py) every worker host reads at this path
    path: Mapped[str] = mapped_column(Text)
    base: Mapped[str | None] = mapped_column(Text)  # what it was trained or built from
    card: Mapped[dict[str, Any]] = mapped_column(default=dict)  # training card, manifest
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None]
