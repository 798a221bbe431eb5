"""Post-processing stores an outcome exactly once, whatever the redeliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import event, select

from services.postprocess.results import record_outcome
from services.worker.job_state import (
    Claim,
    claim_jobs,
    claim_with_transcripts,
    load_session_turns,
)
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.db.engine import get_engine, session_scope
from shared.db.models import (
    ApiKey,
    ChatSession,
    DeliveryStatus,
    Job,
    JobStatus,
    Message,
    Tenant,
    WebhookDelivery,
    utcnow,
)
from shared.messaging.schemas import InferenceOutcome, JobError
from tests.integration.factories import completed_outcome, make_job


def test_an_outcome_delivered_twice_is_stored_once(backend_settings: Settings) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    job = make_job(url, key.id, webhook_url="https://example.com/hook")

    first = record_outcome(backend_settings, completed_outcome(job.id, "first answer"))
    second = record_outcome(backend_settings, completed_outcome(job.id, "a second generation"))

    with session_scope(url) as session:
        stored = session.get(Job, job.id)
        messages = session.scalars(select(Message).where(Message.job_id == job.id)).all()
        deliveries = session.scalars(select(WebhookDelivery)).all()
    assert stored.status is JobStatus.COMPLETED
    assert stored.response == "first answer"
    assert stored.batch_size == 3
    assert stored.timings["total_ms"] >= 0
    assert stored.engine["providers"] == ["CPUExecutionProvider"]
    assert sorted((m.position, m.role, m.content) for m in messages) == [
        (0, "user", "Where is my order?"),
        (1, "assistant", "first answer"),
    ]
    assert len(deliveries) == 1
    assert deliveries[0].event_type == "job.completed"
    assert deliveries[0].status is DeliveryStatus.PENDING
    assert deliveries[0].payload["data"]["response"] == "first answer"
    # the redelivery hands the unattempted delivery on again (the first sender may have died)
    assert first == second == [deliveries[0].id]


def test_a_failed_job_gets_a_failure_event_and_no_transcript(backend_settings: Settings) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    job = make_job(url, key.id, webhook_url="https://example.com/hook")
    failure = InferenceOutcome(
        job_id=job.id,
        status="expired",
        error=JobError(code="deadline_exceeded", message="too late"),
        finished_at=utcnow(),
    )
    record_outcome(backend_settings, failure)
    with session_scope(url) as session:
        stored = session.get(Job, job.id)
        messages = session.scalars(select(Message)).all()
        delivery = session.scalars(select(WebhookDelivery)).one()
    assert stored.status is JobStatus.EXPIRED
    assert stored.error == {"code": "deadline_exceeded", "message": "too late"}
    assert messages == []
    assert delivery.event_type == "job.failed"


def test_a_cancelled_job_is_not_overwritten(backend_settings: Settings) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    job = make_job(url, key.id, status=JobStatus.CANCELLED)
    assert record_outcome(backend_settings, completed_outcome(job.id)) == []
    with session_scope(url) as session:
        assert session.get(Job, job.id).status is JobStatus.CANCELLED
        assert session.scalars(select(Message)).all() == []


def last_activity(url: str, session_id: uuid.UUID | None) -> datetime:
    with session_scope(url) as session:
        chat_session = session.get(ChatSession, session_id)
        assert chat_session is not None
        return chat_session.last_activity_at


def test_a_handoff_in_a_session_stores_every_row_in_few_statements(
    backend_settings: Settings,
) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    job = make_job(
        url, key.id, session_external_id="customer-7", webhook_url="https://example.com/hook"
    )
    active_before = last_activity(url, job.session_id)
    outcome = completed_outcome(job.id, "A colleague will answer you here.").model_copy(
        update={"handoff": True, "route": "rule"}
    )
    # the tenant's moderation lists are read once per process, by its first job
    record_outcome(backend_settings, completed_outcome(make_job(url, key.id).id))
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = get_engine(url)
    event.listen(engine, "before_cursor_execute", count)
    try:
        deliveries = record_outcome(backend_settings, outcome)
    finally:
        event.remove(engine, "before_cursor_execute", count)

    with session_scope(url) as session:
        stored = session.get(Job, job.id)
        messages = session.scalars(select(Message).where(Message.job_id == job.id)).all()
        events = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.event_type))
        rows = [(d.id, d.event_type, d.status, d.attempt_count) for d in events]
        chat_session = session.get(ChatSession, job.session_id)
    assert stored.status is JobStatus.COMPLETED and stored.handoff and stored.route == "rule"
    assert stored.updated_at == stored.completed_at
    assert sorted((m.position, m.role, m.content, m.session_id) for m in messages) == [
        (0, "user", "Where is my order?", job.session_id),
        (1, "assistant", "A colleague will answer you here.", job.session_id),
    ]
    assert len({m.id for m in messages}) == 2
    assert [(event_type, status, n) for _id, event_type, status, n in rows] == [
        ("job.completed", DeliveryStatus.PENDING, 0),
        ("job.handoff", DeliveryStatus.PENDING, 0),
    ]
    assert sorted(deliveries) == sorted(row[0] for row in rows)
    assert chat_session.last_activity_at > active_before
    assert chat_session.pii_placeholders == {}
    if backend_settings.database_url.startswith("postgresql"):
        # the job read and locked, the session's row locked, then every write and the
        # notification in one statement
        assert len(statements) == 3, [s[:80] for s in statements]


def test_a_failed_turn_leaves_its_session_idle(backend_settings: Settings) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    job = make_job(url, key.id, session_external_id="customer-8")
    active_before = last_activity(url, job.session_id)
    failure = InferenceOutcome(
        job_id=job.id,
        status="failed",
        error=JobError(code="engine_error", message="out of memory"),
        finished_at=utcnow(),
    )
    assert record_outcome(backend_settings, failure) == []
    with session_scope(url) as session:
        stored = session.get(Job, job.id)
        assert session.scalars(select(Message)).all() == []
    assert stored.status is JobStatus.FAILED
    assert stored.response is None and stored.route is None and not stored.handoff
    assert last_activity(url, job.session_id) == active_before


def test_claiming_runs_a_job_once_and_skips_finished_ones(backend_settings: Settings) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    queued = make_job(url, key.id)
    done = make_job(url, key.id, status=JobStatus.COMPLETED)
    claims = claim_jobs(url, [queued.id, done.id, uuid.uuid4()])
    tenant = key_tenant_id(url, key.id)
    version = knowledge_version(url, tenant)
    # a job that does not exist has no claim
    assert claims == {
        queued.id: Claim(JobStatus.IN_PROGRESS, 1, tenant, key.webhook_secret, version),
        done.id: Claim(JobStatus.COMPLETED, 0, tenant, key.webhook_secret, version),
    }
    # a redelivery of a job whose worker died mid-batch may run again, counting the attempt
    assert claim_jobs(url, [queued.id]) == {
        queued.id: Claim(JobStatus.IN_PROGRESS, 2, tenant, key.webhook_secret, version)
    }


def test_a_claim_carries_the_tenants_current_knowledge_version(
    backend_settings: Settings,
) -> None:
    """The worker routes with the knowledge version read in the claim: a job claimed after a
    knowledge change must see the new version."""
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    tenant = key_tenant_id(url, key.id)
    before = claim_jobs(url, [make_job(url, key.id).id])
    with session_scope(url) as session:
        row = session.get(Tenant, tenant)
        assert row is not None
        row.knowledge_version += 3
    job = make_job(url, key.id)
    after = claim_jobs(url, [job.id])
    assert [claim.knowledge_version for claim in before.values()] == [
        knowledge_version(url, tenant) - 3
    ]
    assert after[job.id].knowledge_version == knowledge_version(url, tenant)


def test_a_claim_reads_the_history_of_the_sessions_it_runs(backend_settings: Settings) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    session_id = stored_exchange(backend_settings, key.id, "customer-9", "I am Ann.", "Hello Ann!")
    follow_up = make_job(url, key.id, query="Who am I?")
    finished = make_job(url, key.id, status=JobStatus.COMPLETED)

    claimed = claim_with_transcripts(url, {follow_up.id: session_id, finished.id: None})

    assert claimed.claims[follow_up.id].status is JobStatus.IN_PROGRESS
    assert claimed.claims[finished.id].status is JobStatus.COMPLETED
    assert [(t.role, t.content) for t in claimed.transcripts[session_id]] == [
        ("user", "I am Ann."),
        ("assistant", "Hello Ann!"),
    ]
    # a session whose job does not run is not read
    skipped = claim_with_transcripts(url, {finished.id: session_id})
    assert skipped.transcripts == {}


def stored_exchange(
    settings: Settings, key_id: uuid.UUID, session_name: str, question: str, answer: str
) -> uuid.UUID:
    """A session with one finished exchange in its transcript; the session's id."""
    job = make_job(settings.database_url, key_id, session_external_id=session_name, query=question)
    record_outcome(settings, completed_outcome(job.id, answer))
    with session_scope(settings.database_url) as session:
        session_id = session.get(Job, job.id).session_id
    assert session_id is not None
    return session_id


def knowledge_version(url: str, tenant_id: uuid.UUID) -> int:
    with session_scope(url) as session:
        row = session.get(Tenant, tenant_id)
        assert row is not None
        return row.knowledge_version


def key_tenant_id(url: str, key_id: uuid.UUID) -> uuid.UUID:
    with session_scope(url) as session:
        key = session.get(ApiKey, key_id)
        assert key is not None
        return key.tenant_id


def test_a_sessions_transcript_is_read_back_in_order(backend_settings: Settings) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    session_id = stored_exchange(backend_settings, key.id, "customer-7", "I am Sam.", "Hello Sam!")
    turns = load_session_turns(url, [session_id])[session_id]
    assert [(t.role, t.content) for t in turns] == [
        ("user", "I am Sam."),
        ("assistant", "Hello Sam!"),
    ]
