"""What the inference worker reads and writes in the database: it claims jobs and reads
session transcripts (one transaction for both, ``claim_with_transcripts``). Results are written
by post-processing, not here."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Select,
    bindparam,
    func,
    select,
    union_all,
    update,
)

from shared.db.engine import autocommit, transaction, writes_in_with_clauses
from shared.db.models import ApiKey, Job, JobStatus, Message, Tenant, utcnow
from shared.messaging.schemas import ChatTurn


@dataclass(frozen=True)
class Claim:
    status: JobStatus
    attempts: int  # how often a worker has taken the job, this time included
    tenant_id: uuid.UUID | None = None  # whose knowledge answers it
    signing_secret: str | None = field(default=None, repr=False)  # the key's webhook secret
    knowledge_version: int | None = None  # the tenant's, as the job was claimed


@dataclass(frozen=True)
class ClaimedJobs:
    claims: dict[uuid.UUID, Claim]  # every existing job's claim
    transcripts: dict[uuid.UUID, list[ChatTurn]]  # by session, of the jobs claimed to run


def claim_jobs(database_url: str, job_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Claim]:
    """Take jobs for running: queued (or redelivered in-progress) jobs become ``in_progress``
    and count one more attempt. Returns every existing job's claim.

    A job that is not ``in_progress`` afterwards was cancelled or finished already (a
    redelivery) and must not run.
    """
    return claim_with_transcripts(database_url, dict.fromkeys(job_ids)).claims


def claim_with_transcripts(
    database_url: str, session_by_job: Mapping[uuid.UUID, uuid.UUID | None]
) -> ClaimedJobs:
    """``claim_jobs`` for the jobs named, and the stored transcripts of the sessions of those
    that run, in one transaction (the claim and the history agree). Each claim carries its
    tenant's knowledge version, so that the worker need not ask for it separately.

    On Postgres the claim is one statement (``CLAIM_IN_ONE_STATEMENT``); a claim that needs no
    history commits on its own, without BEGIN and COMMIT: it is on every job's path."""
    if not session_by_job:
        return ClaimedJobs({}, {})
    parameters = {"job_ids": list(session_by_job), "now": utcnow()}
    wants_history = any(session_id is not None for session_id in session_by_job.values())
    one_statement = writes_in_with_clauses(database_url)
    # The claim need not wait for the disk: until its outcome is stored the broker holds
    # the job, and a claim a database crash took back is made again (``autocommit``).
    scope = transaction if wants_history or not one_statement else autocommit
    with scope(database_url, durable=False) as connection:
        if one_statement:
            rows = connection.execute(CLAIM_IN_ONE_STATEMENT, parameters).all()
        else:
            connection.execute(CLAIM, parameters)
            rows = connection.execute(CLAIMS_READ, parameters).all()
        claims = {
            job_id: Claim(status, attempts, tenant_id, secret, version)
            for job_id, status, attempts, tenant_id, secret, version in rows
        }
        session_ids = {
            session_id
            for job_id, session_id in session_by_job.items()
            if session_id is not None
            and (claim := claims.get(job_id)) is not None
            and claim.status is JobStatus.IN_PROGRESS
        }
        return ClaimedJobs(claims, _session_turns(connection, session_ids))


# The statements are built once: building them per claim cost more than running them.
_JOB_IDS: BindParameter[Any] = bindparam("job_ids", expanding=True)
_NOW: BindParameter[Any] = bindparam("now", type_=Job.__table__.c.updated_at.type)
CLAIM = (
    update(Job)
    .where(Job.id.in_(_JOB_IDS), Job.status.in_([JobStatus.QUEUED, JobStatus.IN_PROGRESS]))
    .values(
        status=JobStatus.IN_PROGRESS,
        started_at=func.coalesce(Job.started_at, _NOW),
        attempts=Job.attempts + 1,
        updated_at=_NOW,
    )
)


def _claims_read(jobs: Any, *where: ColumnElement[bool]) -> Select[Any]:
    """(id, status, attempts, tenant, webhook secret, knowledge version) of ``jobs``' rows."""
    return (
        select(
            jobs.c.id,
            jobs.c.status,
            jobs.c.attempts,
            ApiKey.tenant_id,
            ApiKey.webhook_secret,
            Tenant.knowledge_version,
        )
        .join(ApiKey, ApiKey.id == jobs.c.api_key_id)
        .outerjoin(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(*where)
    )


CLAIMS_READ = _claims_read(Job.__table__, Job.id.in_(_JOB_IDS))

# Postgres: the UPDATE in a WITH clause returns the claimed rows as they are afterwards; the
# jobs it did not take (finished, cancelled) are read beside them. The statement's parts see
# the same snapshot, which is right for those: the UPDATE did not change them.
_CLAIMED = CLAIM.returning(Job.id, Job.status, Job.attempts, Job.api_key_id).cte("claimed")
CLAIM_IN_ONE_STATEMENT = union_all(
    _claims_read(_CLAIMED),
    _claims_read(Job.__table__, Job.id.in_(_JOB_IDS), Job.id.not_in(select(_CLAIMED.c.id))),
)


def load_session_turns(
    database_url: str, session_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[ChatTurn]]:
    """Each session's stored transcript, oldest turn first."""
    if not session_ids:
        return {}
    with transaction(database_url) as connection:
        return _session_turns(connection, session_ids)


def _session_turns(
    connection: Connection, session_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[ChatTurn]]:
    if not session_ids:
        return {}
    turns: dict[uuid.UUID, list[ChatTurn]] = defaultdict(list)
    rows = connection.execute(
        select(Message.session_id, Message.role, Message.content)
        .where(Message.session_id.in_(session_ids))
        .order_by(Message.created_at, Message.job_id, Message.position)
    ).all()
    for session_id, role, content in rows:
        assert session_id is not None  # the query asked for these sessions' messages only
        turns[session_id].append(ChatTurn(role=role, content=content))
    return dict(turns)
