"""The work behind ``GET /v1/jobs``: a page of the caller's tenant's jobs, newest first.

Pages are cut by keyset on ``(created_at, id)``, not by offset: a page starts just after the
last job of the previous one, so jobs submitted while a client pages through are not shown
twice and push nothing out of the pages still to come. The tenant's index on
``(tenant_id, created_at)`` serves both the order and the cursor's range.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, Select, and_, or_, select

from services.api.auth import Caller
from services.api.context import ApiContext
from services.api.jobs.protocol import JobCursor, JobListQuery, JobPage
from shared.db.engine import session_scope
from shared.db.models import ChatSession, Job
from shared.job_view import JobView


def load_job_page(ctx: ApiContext, caller: Caller, query: JobListQuery) -> JobPage:
    with session_scope(ctx.settings.database_url) as session:
        # one row more than the page tells whether another page follows
        rows = session.scalars(job_page_statement(caller.tenant_id, query)).all()
        jobs = rows[: query.limit]
        views = [JobView.from_job(job) for job in jobs]
    has_more = len(rows) > query.limit
    next_after = JobCursor(jobs[-1].created_at, jobs[-1].id).encode() if has_more else None
    return JobPage(data=views, has_more=has_more, next_after=next_after)


def job_page_statement(tenant_id: uuid.UUID, query: JobListQuery) -> Select[Job]:
    conditions: list[ColumnElement[bool]] = [Job.tenant_id == tenant_id]
    if query.status:
        conditions.append(Job.status.in_(sorted(query.status)))
    if query.session_id is not None:
        # the session as clients name it, looked up in the caller's tenant only
        session_pk = select(ChatSession.id).where(
            ChatSession.tenant_id == tenant_id, ChatSession.external_id == query.session_id
        )
        conditions.append(Job.session_id == session_pk.scalar_subquery())
    if query.batch_id is not None:
        conditions.append(Job.batch_id == query.batch_id)
    if query.created_after is not None:
        conditions.append(Job.created_at > query.created_after)
    if query.created_before is not None:
        conditions.append(Job.created_at < query.created_before)
    if query.after is not None:
        conditions.append(_older_than(query.after))
    return (
        select(Job)
        .where(*conditions)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(query.limit + 1)
    )


def _older_than(cursor: JobCursor) -> ColumnElement[bool]:
    """Jobs after ``cursor`` in the newest-first order. The plain ``created_at <=`` is implied by
    the rest; it is there so the index range starts at the cursor rather than at the newest
    job (an OR alone would be a filter over every newer row)."""
    return and_(
        Job.created_at <= cursor.created_at,
        or_(
            Job.created_at < cursor.created_at,
            and_(Job.created_at == cursor.created_at, Job.id < cursor.id),
        ),
    )
