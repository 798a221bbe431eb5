"""The work behind the job endpoints: submit (idempotent, durable), load, wait."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.api.auth import Caller
from services.api.context import ApiContext
from services.api.job_events import JobFinished
from services.api.jobs.group_commit import GroupCommit
from services.api.jobs.protocol import JobCreate
from services.api.outbox import insert_with_job
from services.api.problems import Problem, ProblemType
from shared.config import Settings
from shared.db.engine import read_session, session_scope, transaction, writes_in_with_clauses
from shared.db.models import ChatSession, Job, JobStatus, utcnow
from shared.db.notifications import notify_job_finished
from shared.logs import job_context
from shared.messaging.schemas import ChatTurn, GenerationParams, InferenceRequest
from shared.metrics import JOBS_SUBMITTED
from shared.webhook_urls import WebhookUrlError, check_webhook_url

MAX_IDEMPOTENCY_KEY_LENGTH = 255
# How long a long-poll waits before it takes one of its key's open-wait slots (``_wait``).
SLOT_GRACE_S = 0.1

# A new job's row: (column, Job attribute); the other columns take their defaults.
_NEW_JOB_COLUMNS = (
    ("id", "id"),
    ("tenant_id", "tenant_id"),
    ("api_key_id", "api_key_id"),
    ("session_id", "session_id"),
    ("status", "status"),
    ("query", "query"),
    ("history", "history"),
    ("params", "params"),
    ("metadata", "metadata_"),
    ("webhook_url", "webhook_url"),
    ("priority", "priority"),
    ("deadline_at", "deadline_at"),
    ("idempotency_key", "idempotency_key"),
    ("request_hash", "request_hash"),
    ("created_at", "created_at"),
    ("updated_at", "updated_at"),
)
# Built once (a statement's cache key then costs nothing per submit), each column bound by
# name: a column missing from the parameters is an error, not a silent default.
_INSERT_JOB = insert(Job).values({column: bindparam(column) for column, _ in _NEW_JOB_COLUMNS})
_INSERT_JOB_AND_REQUEST = insert_with_job(_INSERT_JOB)


def new_job_writer(settings: Settings) -> GroupCommit:
    """The API process's group commit of jobs that need nothing read first."""
    return GroupCommit(settings.database_url, _INSERT_JOB_AND_REQUEST)


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool  # False: an earlier request with the same Idempotency-Key made it


def request_fingerprint(endpoint: str, job_in: JobCreate) -> str:
    """Same endpoint and same body (after validation) → same fingerprint."""
    return hashlib.sha256(f"{endpoint}\n{job_in.model_dump_json()}".encode()).hexdigest()


def submit_job(
    ctx: ApiContext,
    caller: Caller,
    job_in: JobCreate,
    *,
    fingerprint: str,
    idempotency_key: str | None,
    job_id: uuid.UUID | None = None,
    stream: bool = False,
) -> Submission:
    """Store the job and its inference request together, then publish the request.

    ``job_id``: the new job's id, when the caller needs it first (a token stream listens on
    it before the job exists); ``stream``: the worker publishes the answer's text as it goes.

    The job is accepted once it and its request are committed (one statement on Postgres when
    nothing is read first, else one transaction): if the publish is not confirmed, the request
    stays in the outbox and the relay publishes it later.
    """
    settings = ctx.settings
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise Problem(
            ProblemType.INVALID_IDEMPOTENCY_KEY,
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters.",
        )
    if job_in.webhook_url is not None:
        try:
            check_webhook_url(
                job_in.webhook_url,
                allow_private=settings.webhook_allow_private,
                resolve_timeout_s=settings.webhook_resolve_timeout_s,
            )
        except WebhookUrlError as error:
            raise Problem(ProblemType.INVALID_WEBHOOK_URL, f"webhook_url {error}.") from None

    ctx.queue_gate.check(caller.tenant_id)
    try:
        return _store_and_publish(
            ctx, caller, job_in, fingerprint, idempotency_key, job_id or uuid.uuid4(), stream
        )
    except IntegrityError:
        # Another request with the same Idempotency-Key committed first: answer as a replay.
        if idempotency_key is None:
            raise
        with session_scope(settings.database_url) as session:
            existing = _job_by_idempotency_key(session, caller, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, fingerprint)


@dataclass(frozen=True)
class _NewSubmission:
    """A submit request past its checks, with what storing it needs."""

    caller: Caller
    job_in: JobCreate
    fingerprint: str
    idempotency_key: str | None
    job_id: uuid.UUID
    stream: bool
    now: datetime


@dataclass(frozen=True)
class _Stored:
    job: Job
    payload: dict[str, Any]  # the inference request, as published
    outbox_id: uuid.UUID


def _store_and_publish(
    ctx: ApiContext,
    caller: Caller,
    job_in: JobCreate,
    fingerprint: str,
    idempotency_key: str | None,
    job_id: uuid.UUID,
    stream: bool,
) -> Submission:
    # The job and its outbox row are written as Core INSERTs: the ORM's unit of work cost more
    # than the statements, and nothing is read back; the answer is built from what was written.
    new = _NewSubmission(caller, job_in, fingerprint, idempotency_key, job_id, stream, utcnow())
    if (
        idempotency_key is None
        and not job_in.session_id
        and writes_in_with_clauses(ctx.settings.database_url)
    ):
        stored = _store_in_one_statement(ctx, new)
    else:
        outcome = _store_in_a_transaction(ctx, new)
        if isinstance(outcome, Submission):
            return outcome  # an earlier request with this Idempotency-Key made the job
        stored = outcome

    # Accepted once committed, confirmed or not: unconfirmed, the outbox relay publishes it.
    JOBS_SUBMITTED.inc()
    # the rest of the request's lines (its publish, its access line) concern this job
    job = stored.job
    structlog.contextvars.bind_contextvars(**job_context(job.id, job.session_id))
    ctx.outbox.publish(stored.outbox_id, stored.payload, job.priority)
    return Submission(job, created=True)


def _store_in_one_statement(ctx: ApiContext, new: _NewSubmission) -> _Stored:
    """A job with nothing to read first (no Idempotency-Key, no session): the job and its
    request in one statement, shared with the jobs other requests of this process are
    submitting now, and one commit (``group_commit.py``)."""
    job = _new_job(new, None)
    payload = _inference_request(ctx.settings, job, new)
    parameters, outbox_id = ctx.outbox.with_job(_job_row(job), payload, new.now)
    ctx.new_jobs.write(parameters)  # with the other requests' waiting now, in one commit
    return _Stored(job, payload, outbox_id)


def _store_in_a_transaction(ctx: ApiContext, new: _NewSubmission) -> _Stored | Submission:
    """The job and its request in one transaction, after the reads an Idempotency-Key (its
    earlier job: a replay) or a session_id (the session, created on first use) need."""
    caller, key, session_id = new.caller, new.idempotency_key, new.job_in.session_id
    with transaction(ctx.settings.database_url) as connection:
        chat_session: ChatSession | None = None
        if key is not None or session_id:
            with Session(bind=connection) as session:
                if key is not None:
                    existing = _job_by_idempotency_key(session, caller, key)
                    if existing is not None:
                        return _replay(existing, new.fingerprint)
                if session_id:
                    chat_session = _session_for(session, caller, session_id)
        job = _new_job(new, chat_session)
        payload = _inference_request(ctx.settings, job, new)
        # the job row first: the outbox row refers to it
        connection.execute(_INSERT_JOB, _job_row(job))
        outbox_id = ctx.outbox.add(connection, job.id, payload, job.priority, new.now)
    return _Stored(job, payload, outbox_id)


def _new_job(new: _NewSubmission, chat_session: ChatSession | None) -> Job:
    """The accepted job as its row will be stored; never added to an ORM session (its row is
    written from ``_job_row``), it is what the answer shows."""
    job_in, now = new.job_in, new.now
    return Job(
        id=new.job_id,
        tenant_id=new.caller.tenant_id,
        api_key_id=new.caller.key_id,
        session=chat_session,
        session_id=chat_session.id if chat_session else None,
        status=JobStatus.QUEUED,
        query=job_in.query,
        history=[turn.model_dump() for turn in job_in.history],
        params=job_in.params.model_dump(),
        metadata_=job_in.metadata,
        webhook_url=job_in.webhook_url,
        priority=job_in.priority,
        deadline_at=now + timedelta(seconds=job_in.deadline_s) if job_in.deadline_s else None,
        idempotency_key=new.idempotency_key,
        request_hash=new.fingerprint,
        created_at=now,
        updated_at=now,
    )


def _job_row(job: Job) -> dict[str, Any]:
    """The parameters of ``_INSERT_JOB`` for ``job``."""
    return {column: getattr(job, attribute) for column, attribute in _NEW_JOB_COLUMNS}


def _inference_request(settings: Settings, job: Job, new: _NewSubmission) -> dict[str, Any]:
    """What the worker is sent for ``job``, as JSON."""
    job_in = new.job_in
    request = InferenceRequest(
        job_id=job.id,
        query=job.query,
        history=[ChatTurn(role=t.role, content=t.content) for t in job_in.history],
        session_id=job.session_id,
        params=GenerationParams(
            max_new_tokens=job_in.params.max_new_tokens or settings.default_max_new_tokens,
            temperature=job_in.params.temperature,
            top_p=job_in.params.top_p,
            seed=job_in.params.seed,
            stop=tuple(job_in.params.stop),
        ),
        priority=job.priority,
        deadline_at=job.deadline_at,
        submitted_at=new.now,
        stream=new.stream,
    )
    return request.model_dump(mode="json")


def _job_by_idempotency_key(session: Session, caller: Caller, key: str) -> Job | None:
    return session.scalar(
        select(Job).where(Job.tenant_id == caller.tenant_id, Job.idempotency_key == key)
    )


def _replay(existing: Job, fingerprint: str) -> Submission:
    if existing.request_hash != fingerprint:
        raise Problem(
            ProblemType.IDEMPOTENCY_KEY_REUSED,
            "This Idempotency-Key was used with a different request body.",
            job_id=str(existing.id),
        )
    return Submission(existing, created=False)


def _session_for(session: Session, caller: Caller, external_id: str) -> ChatSession:
    """The caller's tenant's session named ``external_id``, created on first use."""
    query = select(ChatSession).where(
        ChatSession.tenant_id == caller.tenant_id, ChatSession.external_id == external_id
    )
    found = session.scalar(query)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            created = ChatSession(
                tenant_id=caller.tenant_id, api_key_id=caller.key_id, external_id=external_id
            )
            session.add(created)
        return created
    except IntegrityError:
        # created concurrently by another request of the same caller
        return session.scalars(query).one()


def cancel_job(ctx: ApiContext, caller: Caller, job_id: uuid.UUID) -> Job | None:
    """Cancel a queued or running job; a worker that holds it drops its result."""
    with session_scope(ctx.settings.database_url) as session:
        job = session.scalar(
            select(Job)
            .where(Job.id == job_id, Job.tenant_id == caller.tenant_id)
            .with_for_update(of=Job)
        )
        if job is None:
            return None
        if job.status.is_terminal:
            raise Problem(
                ProblemType.JOB_FINISHED,
                f"The job is {job.status.value}; only queued or running jobs can be cancelled.",
                job_status=job.status.value,
            )
        now = utcnow()
        job.status = JobStatus.CANCELLED
        job.completed_at = now
        job.updated_at = now
        notify_job_finished(session, job.id)
        return job


def load_job(ctx: ApiContext, caller: Caller, job_id: uuid.UUID) -> Job | None:
    with read_session(ctx.settings.database_url) as session:
        return session.scalar(
            select(Job).where(Job.id == job_id, Job.tenant_id == caller.tenant_id)
        )


@dataclass(frozen=True)
class RenderedJob:
    """A finished job as the API shows it (``JobView`` JSON), as its notification carried it."""

    view: dict[str, Any]


def wait_for_job(
    ctx: ApiContext,
    caller: Caller,
    job_id: uuid.UUID,
    wait_s: float,
    *,
    hold_slot: Callable[[], AbstractContextManager[None]] | None = None,
) -> Job | None:
    """The job, once it is terminal or ``wait_s`` has passed, whichever comes first.

    ``hold_slot`` (one of the key's open-wait slots) is held only while the job is waited
    for: a job that is finished (or missing) at the first look is answered at once, without
    taking a slot (a database write and delete) or counting against the key's cap."""
    waited = _wait(ctx, caller, job_id, wait_s, hold_slot, rendered=False)
    assert not isinstance(waited, RenderedJob)  # rendered=False: always the row
    return waited


def wait_for_job_view(
    ctx: ApiContext,
    caller: Caller,
    job_id: uuid.UUID,
    wait_s: float,
    *,
    hold_slot: Callable[[], AbstractContextManager[None]] | None = None,
) -> Job | RenderedJob | None:
    """As ``wait_for_job``, but a job that finishes while waited for is given as its
    notification rendered it, where it did (Postgres): no second read of the row."""
    return _wait(ctx, caller, job_id, wait_s, hold_slot, rendered=True)


def _wait(
    ctx: ApiContext,
    caller: Caller,
    job_id: uuid.UUID,
    wait_s: float,
    hold_slot: Callable[[], AbstractContextManager[None]] | None,
    *,
    rendered: bool,
) -> Job | RenderedJob | None:
    give_up_at = time.monotonic() + wait_s
    with ctx.job_events.subscribe(job_id) as finished:
        # the first read also checks that the job is the caller's tenant's: a notification
        # then only says what became of it
        job = load_job(ctx, caller, job_id)
        if job is None or job.status.is_terminal:
            return job
        # Many answers come within moments (FAQ, rules, the cache, short generations): a
        # wait takes one of the key's slots (a write, and a delete after it) only once it
        # has lasted SLOT_GRACE_S. The slot's writes are then out of the way of the job's
        # start, and a quick answer needs none.
        seen: Job | RenderedJob | None = job
        if finished.wait(min(SLOT_GRACE_S, wait_s)):
            seen = _look_again(ctx, caller, job_id, finished, rendered=rendered)
            if _ended(seen):
                return seen
        if give_up_at - time.monotonic() <= 0:
            return seen
        with hold_slot() if hold_slot is not None else nullcontext():
            intervals = ctx.job_events.poll_intervals()
            while (remaining := give_up_at - time.monotonic()) > 0:
                finished.wait(min(next(intervals), remaining))
                seen = _look_again(ctx, caller, job_id, finished, rendered=rendered)
                if _ended(seen):
                    return seen
            return seen


def _look_again(
    ctx: ApiContext, caller: Caller, job_id: uuid.UUID, finished: JobFinished, *, rendered: bool
) -> Job | RenderedJob | None:
    """The job after a wake-up (or a safety timeout): as its notification rendered it when it
    carried it, else read again."""
    finished.clear()
    if rendered and finished.rendered is not None:
        return RenderedJob(json.loads(finished.rendered))
    return load_job(ctx, caller, job_id)


def _ended(seen: Job | RenderedJob | None) -> bool:
    """Whether the wait is over: the job is gone, or finished (a notification is sent only
    for a finished job)."""
    return seen is None or isinstance(seen, RenderedJob) or seen.status.is_terminal
