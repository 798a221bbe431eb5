"""Storing an inference outcome: the job's result, its transcript and its webhook event, in one
transaction, exactly once however often the outcome is redelivered."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from services.postprocess.job_metrics import FinishedJob, observe_finished
from services.postprocess.moderation import moderate_answer
from shared.batch_completion import finish_batch_if_done
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import (
    ChatSession,
    DeliveryStatus,
    Job,
    JobStatus,
    Message,
    Tenant,
    WebhookDelivery,
    utcnow,
)
from shared.db.notifications import notify_job_finished
from shared.job_view import JobView
from shared.logs import get_logger
from shared.messaging.schemas import InferenceOutcome, JobError
from shared.pii import PlaceholderMap
from shared.pii.secret import pii_secret
from shared.tenant_safety import TenantSafety, TenantSafetyCache

log = get_logger(__name__)

EVENT_FOR_STATUS = {
    JobStatus.COMPLETED: "job.completed",
    JobStatus.FAILED: "job.failed",
    JobStatus.EXPIRED: "job.failed",
}


HANDOFF_EVENT = "job.handoff"

# each tenant's moderator and anonymiser, rebuilt when its knowledge version moves
_safety = TenantSafetyCache()

# Longer than a delivery attempt can take (CHATQ_WEBHOOK_TIMEOUT_S is at most 120 s): a sweeper
# that found the new delivery due would start a second attempt of it.
FIRST_ATTEMPT_LEASE = timedelta(seconds=150)


def new_delivery_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def webhook_payload(event_type: str, job: Job, now: datetime) -> dict[str, object]:
    """The Standard Webhooks envelope: ``type``, ``timestamp`` and the job as ``data``."""
    return {
        "type": event_type,
        "timestamp": now.isoformat(),
        "data": JobView.from_job(job).model_dump(mode="json"),
    }


def record_outcome(settings: Settings, outcome: InferenceOutcome) -> list[str]:
    """Store ``outcome``; return the ids of webhook deliveries to attempt now.

    A job already in a terminal state (a redelivered outcome, or a job cancelled meanwhile) is
    left as it is; its still-unattempted deliveries are returned again, in case the process that
    stored it died before handing them on.
    """
    with session_scope(settings.database_url) as session:
        found = session.execute(
            # the tenant comes in the same round trip (its moderation and anonymisation);
            # of=Job: Postgres cannot lock the outer-joined session row that comes with it
            select(Job, Tenant)
            .join(Tenant, Tenant.id == Job.tenant_id)
            .where(Job.id == outcome.job_id)
            .with_for_update(of=Job)
        ).one_or_none()
        if found is None:  # a tenant's jobs go with it (ON DELETE CASCADE)
            log.warning("outcome_for_unknown_job", job_id=str(outcome.job_id))
            return []
        job, tenant = found
        if job.status.is_terminal:
            log.info("outcome_already_recorded", job_id=str(job.id), status=job.status.value)
            return _unattempted_deliveries(session, job.id)

        now = utcnow()
        safety = _safety.get(session, tenant)
        job.status = JobStatus(outcome.status)
        job.completed_at = now
        job.error = outcome.error.model_dump() if outcome.error else None
        if outcome.status == "completed":
            checked = moderate_answer(safety, job.query, outcome)
            job.response = checked.response
            job.route = checked.route
            job.moderation = checked.moderation
            job.sources = [source.model_dump() for source in outcome.sources]
            job.intent = outcome.intent.model_dump() if outcome.intent else None
            job.handoff = outcome.handoff
            job.usage = outcome.usage.model_dump() if outcome.usage else None
            job.engine = outcome.engine.model_dump() if outcome.engine else None
            job.model_version = (
                (outcome.engine.version or outcome.engine.model) if outcome.engine else None
            )
            if outcome.timings:
                timings = outcome.timings.model_copy(
                    update={"total_ms": round((now - job.created_at).total_seconds() * 1000, 3)}
                )
                job.timings = timings.model_dump()
                job.batch_size = timings.batch_size

        stored_texts = _anonymise_texts(session, job, safety, pii_secret(settings))
        if job.status is JobStatus.COMPLETED:
            _write_transcript(session, job, stored_texts, now)
        deliveries = []
        if job.webhook_url:
            events = [EVENT_FOR_STATUS[job.status]]
            if job.handoff:
                # a person takes over: the backend routes the conversation to its agents
                events.append(HANDOFF_EVENT)
            for event_type in events:
                delivery = WebhookDelivery(
                    id=new_delivery_id(),
                    job_id=job.id,
                    api_key_id=job.api_key_id,
                    event_type=event_type,
                    url=job.webhook_url,
                    # stored anonymised: the sender puts the clear texts back while the job
                    # still holds them (see CHATQ_RESULT_RETENTION_S)
                    payload=_anonymised(webhook_payload(event_type, job, now), stored_texts),
                    status=DeliveryStatus.PENDING,
                    # the first attempt is handed on by finalize_job at once; the sweeper takes
                    # the delivery only if that hand-off is lost, not while it runs
                    next_attempt_at=now + FIRST_ATTEMPT_LEASE,
                )
                session.add(delivery)
                deliveries.append(delivery.id)
        if job.batch_id is not None:  # its batch ends with its last job
            deliveries += finish_batch_if_done(
                session, job.batch_id, now, first_attempt_at=now + FIRST_ATTEMPT_LEASE
            )
        # the job as the API shows it rides in the notification (Postgres): a long-poll
        # answers from it without reading the job again
        notify_job_finished(session, job.id, lambda: JobView.from_job(job).model_dump_json())
        log.info("job_finished", job_id=str(job.id), status=job.status.value)
        finished = FinishedJob(job.status.value, job.route, job.timings, outcome.usage, job.handoff)
    observe_finished(finished)  # once committed: a rolled-back store is retried, not counted
    return deliveries


@dataclass(frozen=True)
class StoredTexts:
    """A job's question and answer as they may be kept: anonymised."""

    query: str
    response: str | None


def _anonymise_texts(
    session: Session, job: Job, safety: TenantSafety, secret: bytes
) -> StoredTexts:
    chat_session = (
        session.get(ChatSession, job.session_id, with_for_update=True)
        if job.session_id is not None
        else None
    )
    placeholders = PlaceholderMap(
        secret, chat_session.pii_placeholders if chat_session is not None else None
    )
    stored = StoredTexts(
        query=safety.anonymizer.anonymize(job.query, placeholders),
        response=(
            safety.anonymizer.anonymize(job.response, placeholders)
            if job.response is not None
            else None
        ),
    )
    if chat_session is not None:
        chat_session.pii_placeholders = placeholders.to_json()
    return stored


def _anonymised(payload: dict[str, Any], texts: StoredTexts) -> dict[str, Any]:
    data = payload["data"]
    return {**payload, "data": {**data, "query": texts.query, "response": texts.response}}


def _write_transcript(session: Session, job: Job, texts: StoredTexts, now: datetime) -> None:
    # one INSERT of both rows, without the unit of work (nothing reads them back here)
    session.execute(
        insert(Message),
        [
            {
                "job_id": job.id,
                "session_id": job.session_id,
                "position": 0,
                "role": "user",
                "content": texts.query,
                "created_at": job.created_at,
            },
            {
                "job_id": job.id,
                "session_id": job.session_id,
                "position": 1,
                "role": "assistant",
                "content": texts.response or "",
                "created_at": now,
            },
        ],
    )
    if job.session_id is not None:
        chat_session = session.get(ChatSession, job.session_id)
        if chat_session is not None:
            chat_session.last_activity_at = now


def _unattempted_deliveries(session: Session, job_id: uuid.UUID) -> list[str]:
    return list(
        session.scalars(
            select(WebhookDelivery.id).where(
                WebhookDelivery.job_id == job_id,
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.attempt_count == 0,
            )
        )
    )


def record_failure(settings: Settings, job_id: uuid.UUID, code: str, message: str) -> list[str]:
    """Fail a job that post-processing could not finish (its outcome keeps failing)."""
    outcome = InferenceOutcome(
        job_id=job_id,
        status="failed",
        error=JobError(code=code, message=message[:1000]),
        finished_at=utcnow(),
    )
    return record_outcome(settings, outcome)
