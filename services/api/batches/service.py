"""The work behind the batch endpoints: store a batch whole, read it with its counts, list,
cancel.

A batch is stored in one transaction: its row and all its jobs (Postgres's COPY, SQLite's
executemany), so it is accepted whole or not at all. Its jobs get no outbox rows here: the
batch feeder (``feeder.py``) hands them to the outbox a few at a time while the inference
queue is short, so a batch of 10,000 neither costs 10,000 publishes in the request nor stands
in front of interactive jobs.

Limits: batch jobs have their own allowance per tenant (``CHATQ_TENANT_MAX_OPEN_BATCH_JOBS``)
and do not count against ``CHATQ_TENANT_MAX_OPEN_JOBS``, which would refuse a tenant's
interactive jobs for as long as its batch runs (and any batch larger than the share).
``CHATQ_MAX_QUEUE_DEPTH`` is not applied: a batch waits in the database, not in the queue,
and the feeder adds to the queue only while it is short.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

import structlog
from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    and_,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.api.auth import Caller
from services.api.batches.feeder import batch_accepted
from services.api.batches.lines import BatchIn, BatchJobIn
from services.api.batches.protocol import BatchListQuery, BatchPage
from services.api.context import ApiContext
from services.api.jobs.protocol import JobCursor
from services.api.jobs.service import MAX_IDEMPOTENCY_KEY_LENGTH
from services.api.problems import Problem, ProblemType
from shared.batch_completion import OPEN_BATCH_STATUSES, finish_batch_if_done
from shared.batch_view import BatchView, count_jobs_by_status
from shared.db.engine import session_scope
from shared.db.models import Batch, BatchStatus, ChatSession, Job, JobStatus, utcnow
from shared.db.notifications import JOB_FINISHED_CHANNEL, ring_job_finished_after_commit
from shared.logs import get_logger
from shared.metrics import JOBS_SUBMITTED

log = get_logger(__name__)

LOOKUP_CHUNK = 500  # ids in one IN (...) list
JOBS = cast(Table, Job.__table__)  # the table itself: inserts without the ORM's bookkeeping


@dataclass(frozen=True)
class BatchState:
    """A batch and its jobs' counts by status, read together."""

    batch: Batch
    counts: dict[JobStatus, int]

    def view(self) -> BatchView:
        return BatchView.from_batch(self.batch, self.counts)


@dataclass(frozen=True)
class BatchSubmission:
    state: BatchState
    created: bool  # False: an earlier request with the same Idempotency-Key made it


def submit_batch(
    ctx: ApiContext, caller: Caller, batch_in: BatchIn, *, idempotency_key: str | None
) -> BatchSubmission:
    """Store the batch and every job of it in one transaction (all or nothing)."""
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise Problem(
            ProblemType.INVALID_IDEMPOTENCY_KEY,
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters.",
        )
    try:
        submission = _store(ctx, caller, batch_in, idempotency_key)
    except IntegrityError:
        # Another request with the same Idempotency-Key committed first: answer as a replay.
        if idempotency_key is None:
            raise
        with session_scope(ctx.settings.database_url) as session:
            existing = _batch_by_idempotency_key(session, caller, idempotency_key)
            if existing is None:
                raise
            return _replay(session, existing, batch_in.fingerprint)
    if submission.created:
        batch_accepted()
    return submission


def _store(
    ctx: ApiContext, caller: Caller, batch_in: BatchIn, idempotency_key: str | None
) -> BatchSubmission:
    settings = ctx.settings
    now = utcnow()
    total = len(batch_in.jobs)
    with session_scope(settings.database_url) as session:
        if idempotency_key is not None:
            existing = _batch_by_idempotency_key(session, caller, idempotency_key)
            if existing is not None:
                return _replay(session, existing, batch_in.fingerprint)
        _check_allowance(session, caller.tenant_id, total, settings.tenant_max_open_batch_jobs)
        batch = Batch(
            id=uuid.uuid4(),
            tenant_id=caller.tenant_id,
            api_key_id=caller.key_id,
            status=BatchStatus.IN_PROGRESS,
            total=total,
            released=0,
            webhook_url=batch_in.options.webhook_url,
            metadata_=batch_in.options.metadata,
            idempotency_key=idempotency_key,
            request_hash=batch_in.fingerprint,
            created_at=now,
        )
        session.add(batch)
        session.flush()  # the batch row first: the jobs refer to it
        session_ids = _session_ids(
            session, caller, {b.job.session_id for b in batch_in.jobs if b.job.session_id}
        )
        rows = [
            _job_row(batch, index, batch_job, session_ids, now)
            for index, batch_job in enumerate(batch_in.jobs)
        ]
        _insert_jobs(session, rows)
    JOBS_SUBMITTED.inc(total)
    structlog.contextvars.bind_contextvars(batch_id=str(batch.id))
    log.info("batch_accepted", batch_id=str(batch.id), jobs=total)
    return BatchSubmission(BatchState(batch, {JobStatus.QUEUED: total}), created=True)


def _job_row(
    batch: Batch,
    index: int,
    batch_job: BatchJobIn,
    session_ids: dict[str, uuid.UUID],
    now: datetime,
) -> dict[str, Any]:
    """The ``jobs`` row of one job of the batch, as ``POST /v1/jobs`` would store it."""
    job = batch_job.job
    return {
        "id": uuid.uuid4(),
        "tenant_id": batch.tenant_id,
        "api_key_id": batch.api_key_id,
        "session_id": session_ids[job.session_id] if job.session_id else None,
        "status": JobStatus.QUEUED,
        "query": job.query,
        "history": [turn.model_dump() for turn in job.history],
        "params": job.params.model_dump(),
        "metadata": job.metadata,
        "webhook_url": job.webhook_url,
        "priority": job.priority,
        "deadline_at": now + timedelta(seconds=job.deadline_s) if job.deadline_s else None,
        # the batch's fingerprint: a batch job has no Idempotency-Key of its own
        "request_hash": batch.request_hash,
        "batch_id": batch.id,
        "batch_index": index,
        "custom_id": batch_job.custom_id,
        "created_at": now,
        "updated_at": now,
        "handoff": False,
        "attempts": 0,
    }


def _insert_jobs(session: Session, rows: list[dict[str, Any]]) -> None:
    """Every job of the batch in one go: Postgres's COPY, SQLite's executemany (one prepared
    statement run from C). On Postgres an executemany sends one INSERT per job, and multi-row
    INSERTs cost psycopg more in parsing their 200,000 placeholders than the insert itself:
    accepting 10,000 jobs took 10 s and 11 s that way, 3.6 s with COPY (a busy 2-core host)."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        session.execute(insert(JOBS), rows)
        return
    from psycopg import sql  # the Postgres driver: imported where it is known to be the one
    from psycopg.types.json import Jsonb

    columns = list(rows[0])
    copy_jobs = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(Job.__tablename__), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    driver_connection = connection.connection.driver_connection
    assert driver_connection is not None
    with driver_connection.cursor() as cursor, cursor.copy(copy_jobs) as copy:
        for row in rows:
            copy.write_row([_copy_value(row[column], Jsonb) for column in columns])


def _copy_value(value: Any, jsonb: Any) -> Any:
    """A value as COPY takes it: JSON documents wrapped, enums by value."""
    if isinstance(value, dict | list):
        return jsonb(value)
    if isinstance(value, StrEnum):
        return value.value
    return value


def _check_allowance(session: Session, tenant_id: uuid.UUID, jobs: int, cap: int) -> None:
    """429 if the tenant's unfinished batches and this one would hold more than ``cap`` jobs.
    Like the tenant's share, soft by the batches submitted at the same moment."""
    if not cap:
        return
    open_jobs = (
        session.scalar(
            select(func.coalesce(func.sum(Batch.total), 0)).where(
                Batch.tenant_id == tenant_id, Batch.status.in_(OPEN_BATCH_STATUSES)
            )
        )
        or 0
    )
    if open_jobs + jobs > cap:
        raise Problem(
            ProblemType.TENANT_QUEUE_FULL,
            f"This tenant's unfinished batches hold {open_jobs} jobs; with these {jobs} it "
            f"would go over its batch allowance of {cap}. Retry when a batch has finished.",
            headers={"Retry-After": "30"},
            open_batch_jobs=open_jobs,
            limit=cap,
        )


def _session_ids(
    session: Session, caller: Caller, external_ids: Collection[str]
) -> dict[str, uuid.UUID]:
    """The tenant's sessions named ``external_ids``, the missing ones created (in bulk)."""
    wanted = sorted(external_ids)
    found: dict[str, uuid.UUID] = {}
    for attempt in range(3):
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            rows = session.execute(
                select(ChatSession.external_id, ChatSession.id).where(
                    ChatSession.tenant_id == caller.tenant_id,
                    ChatSession.external_id.in_(chunk),
                )
            ).all()
            found.update({external_id: session_id for external_id, session_id in rows})
        missing = [external_id for external_id in wanted if external_id not in found]
        if not missing:
            return found
        now = utcnow()
        created = {external_id: uuid.uuid4() for external_id in missing}
        new_sessions = [
            {
                "id": session_id,
                "tenant_id": caller.tenant_id,
                "api_key_id": caller.key_id,
                "external_id": external_id,
                "created_at": now,
                "last_activity_at": now,
            }
            for external_id, session_id in created.items()
        ]
        try:
            with session.begin_nested():
                session.execute(insert(ChatSession), new_sessions)
        except IntegrityError:
            # another request created one of them meanwhile: read them again
            if attempt == 2:
                raise
            continue
        return found | created
    return found


def _batch_by_idempotency_key(session: Session, caller: Caller, key: str) -> Batch | None:
    return session.scalar(
        select(Batch).where(Batch.tenant_id == caller.tenant_id, Batch.idempotency_key == key)
    )


def _replay(session: Session, existing: Batch, fingerprint: str) -> BatchSubmission:
    if existing.request_hash != fingerprint:
        raise Problem(
            ProblemType.IDEMPOTENCY_KEY_REUSED,
            "This Idempotency-Key was used with a different batch.",
            batch_id=str(existing.id),
        )
    counts = count_jobs_by_status(session, [existing.id])[existing.id]
    return BatchSubmission(BatchState(existing, counts), created=False)


# --- reading ----------------------------------------------------------------------------------


def load_batch(ctx: ApiContext, caller: Caller, batch_id: uuid.UUID) -> BatchState | None:
    with session_scope(ctx.settings.database_url) as session:
        batch = _tenant_batch(session, caller, batch_id)
        if batch is None:
            return None
        return BatchState(batch, count_jobs_by_status(session, [batch.id])[batch.id])


def _tenant_batch(session: Session, caller: Caller, batch_id: uuid.UUID) -> Batch | None:
    return session.scalar(
        select(Batch).where(Batch.id == batch_id, Batch.tenant_id == caller.tenant_id)
    )


def load_batch_page(ctx: ApiContext, caller: Caller, query: BatchListQuery) -> BatchPage:
    """The tenant's batches, newest first, cut by keyset on ``(created_at, id)`` as the job
    listing is (services/api/jobs/listing.py says why)."""
    conditions: list[ColumnElement[bool]] = [Batch.tenant_id == caller.tenant_id]
    if query.status:
        conditions.append(Batch.status.in_(sorted(query.status)))
    if query.after is not None:
        cursor = query.after
        conditions.append(
            and_(
                Batch.created_at <= cursor.created_at,
                or_(
                    Batch.created_at < cursor.created_at,
                    and_(Batch.created_at == cursor.created_at, Batch.id < cursor.id),
                ),
            )
        )
    with session_scope(ctx.settings.database_url) as session:
        rows = session.scalars(
            select(Batch)
            .where(*conditions)
            .order_by(Batch.created_at.desc(), Batch.id.desc())
            .limit(query.limit + 1)  # one more tells whether another page follows
        ).all()
        batches = rows[: query.limit]
        counts = count_jobs_by_status(session, [batch.id for batch in batches])
        views = [BatchView.from_batch(batch, counts.get(batch.id, {})) for batch in batches]
    has_more = len(rows) > query.limit
    last = batches[-1] if has_more else None
    next_after = JobCursor(last.created_at, last.id).encode() if last is not None else None
    return BatchPage(data=views, has_more=has_more, next_after=next_after)


# --- cancelling -------------------------------------------------------------------------------


def cancel_batch(ctx: ApiContext, caller: Caller, batch_id: uuid.UUID) -> BatchState | None:
    """Cancel the batch's queued jobs; its running ones finish, and the batch ends
    ``cancelled`` once they have (at once if none was running)."""
    with session_scope(ctx.settings.database_url) as session:
        batch = _tenant_batch(session, caller, batch_id)
        if batch is None:
            return None
        if batch.status is not BatchStatus.IN_PROGRESS:
            raise Problem(
                ProblemType.BATCH_NOT_IN_PROGRESS,
                f"The batch is {batch.status.value}; only a batch in progress can be cancelled.",
                batch_status=batch.status.value,
            )
        now = utcnow()
        # jobs before the batch row: the lock order of everyone who ends batch jobs
        # (shared/batch_completion.py)
        cancelled = session.execute(
            update(Job)
            .where(Job.batch_id == batch_id, Job.status == JobStatus.QUEUED)
            .values(status=JobStatus.CANCELLED, completed_at=now, updated_at=now)
            .returning(Job.id)
        ).scalars()
        cancelled_ids = list(cancelled)
        _notify_jobs_finished(session, cancelled_ids)
        locked = session.scalars(
            select(Batch)
            .where(Batch.id == batch_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
        if locked.status is BatchStatus.IN_PROGRESS:
            locked.status = BatchStatus.CANCELLING
            locked.cancelling_at = now
        # with nothing running it ends now; otherwise the last running job's finisher ends it
        finish_batch_if_done(session, batch_id, now, first_attempt_at=now)
        log.info("batch_cancelled", batch_id=str(batch_id), jobs_cancelled=len(cancelled_ids))
        return BatchState(locked, count_jobs_by_status(session, [batch_id])[batch_id])


def _notify_jobs_finished(session: Session, job_ids: list[uuid.UUID]) -> None:
    """Wake the long-polls of these jobs (Postgres: one statement per chunk of ids; SQLite:
    the job-finished doorbell, once committed)."""
    if not job_ids:
        return
    if session.get_bind().dialect.name != "postgresql":
        ring_job_finished_after_commit(session)
        return
    for start in range(0, len(job_ids), LOOKUP_CHUNK):
        chunk = job_ids[start : start + LOOKUP_CHUNK]
        session.execute(
            select(func.pg_notify(JOB_FINISHED_CHANNEL, sql_cast(Job.id, String))).where(
                Job.id.in_(chunk)
            )
        )
