"""The writes that store a finished job, in as few round trips as the database allows.

Every finished job takes this path (``results.record_outcome``). Through the ORM's unit of work
it cost about eight waits on the server and more Python than the statements: the job's UPDATE
flushed before the transcript's INSERT, the session's UPDATE and each delivery's INSERT at the
commit, the notification apart. Here the writes are statements built once, with parameters:
- on Postgres they run as one statement, each a WITH clause of the ``pg_notify`` that announces
  the job (``NOTIFY_JOB_FINISHED``): one round trip for all of them;
- on SQLite (no writes in WITH clauses, no notifications) one after the other, and the
  job-finished doorbell rings once the transaction commits.

Every column is given a value, defaults included: SQLAlchemy fills in column defaults for an
INSERT or UPDATE it runs itself, not for one in a WITH clause of a SELECT. No parameter is named
like a column (``where_job_id``, ``job_status``, ``message_0_id``...): SQLAlchemy would take a
parameter named like a column that a statement leaves out as a value for it.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Insert, Select, Update, bindparam, func, insert, update
from sqlalchemy.orm import Session

from shared.db.models import Base, ChatSession, Job, Message, WebhookDelivery
from shared.db.notifications import (
    NOTIFICATION,
    NOTIFY_JOB_FINISHED,
    notification_payload,
    notify_job_finished,
)

# What an outcome sets on its job (``results._finished_state`` gives every one of them).
JOB_RESULT_COLUMNS = (
    "status",
    "completed_at",
    "updated_at",
    "error",
    "response",
    "route",
    "moderation",
    "sources",
    "intent",
    "handoff",
    "usage",
    "engine",
    "model_version",
    "timings",
    "batch_size",
)
MESSAGE_COLUMNS = ("id", "job_id", "session_id", "position", "role", "content", "created_at")
DELIVERY_COLUMNS = (
    "id",
    "job_id",
    "api_key_id",
    "event_type",
    "url",
    "payload",
    "status",
    "next_attempt_at",
    "attempt_count",
    "created_at",
)
# A job's events: job.completed or job.failed, and job.handoff beside job.completed.
MAX_DELIVERIES_PER_JOB = 2


def _parameters(entity: type[Base], prefix: str, columns: Iterable[str]) -> dict[str, Any]:
    table = entity.__table__
    return {name: bindparam(f"{prefix}_{name}", type_=table.c[name].type) for name in columns}


_JOB_UPDATE = (
    update(Job)
    .where(Job.id == bindparam("where_job_id", type_=Job.__table__.c.id.type))
    .values(_parameters(Job, "job", JOB_RESULT_COLUMNS))
)
_SESSION_UPDATE = (
    update(ChatSession)
    .where(ChatSession.id == bindparam("where_session_id", type_=ChatSession.__table__.c.id.type))
    .values(
        pii_placeholders=bindparam(
            "session_pii_placeholders", type_=ChatSession.__table__.c.pii_placeholders.type
        ),
        # a failed turn is no activity: None leaves the time as it is
        last_activity_at=func.coalesce(
            bindparam(
                "session_last_activity_at", type_=ChatSession.__table__.c.last_activity_at.type
            ),
            ChatSession.last_activity_at,
        ),
    )
)
_MESSAGE_INSERTS = tuple(
    insert(Message).values(_parameters(Message, f"message_{i}", MESSAGE_COLUMNS)) for i in range(2)
)
_DELIVERY_INSERTS = tuple(
    insert(WebhookDelivery).values(_parameters(WebhookDelivery, f"delivery_{i}", DELIVERY_COLUMNS))
    for i in range(MAX_DELIVERIES_PER_JOB)
)


@functools.cache
def _in_one_statement(statements: tuple[Insert | Update, ...]) -> Select[Any]:
    """Postgres: ``statements`` as WITH clauses of the job's notification (built once per
    combination, so that SQLAlchemy compiles each combination once)."""
    return NOTIFY_JOB_FINISHED.add_cte(
        *(statement.cte(f"write_{i}") for i, statement in enumerate(statements))
    )


class JobWrites:
    """A finished job's writes, gathered, then run together (``execute``)."""

    def __init__(self, job_id: uuid.UUID, *, one_statement: bool) -> None:
        """``one_statement``: the database runs writes in WITH clauses
        (``writes_in_with_clauses``)."""
        self.job_id = job_id
        self.one_statement = one_statement
        self._statements: list[Insert | Update] = []
        self._parameters: dict[str, Any] = {"where_job_id": job_id}
        self._messages = 0
        self._deliveries = 0

    def update_job(self, changes: dict[str, Any]) -> None:
        """``changes``: a value for each of ``JOB_RESULT_COLUMNS``."""
        self._add(_JOB_UPDATE, "job", changes)

    def update_session(
        self, session_id: uuid.UUID, pii_placeholders: Any, last_activity_at: Any
    ) -> None:
        self._parameters["where_session_id"] = session_id
        self._add(
            _SESSION_UPDATE,
            "session",
            {"pii_placeholders": pii_placeholders, "last_activity_at": last_activity_at},
        )

    def insert_message(self, row: dict[str, Any]) -> None:
        """``row``: a value for each of ``MESSAGE_COLUMNS``."""
        self._add(_MESSAGE_INSERTS[self._messages], f"message_{self._messages}", row)
        self._messages += 1

    def insert_delivery(self, row: dict[str, Any]) -> None:
        """``row``: a value for each of ``DELIVERY_COLUMNS``."""
        self._add(_DELIVERY_INSERTS[self._deliveries], f"delivery_{self._deliveries}", row)
        self._deliveries += 1

    def _add(self, statement: Insert | Update, prefix: str, values: dict[str, Any]) -> None:
        self._statements.append(statement)
        self._parameters.update((f"{prefix}_{name}", value) for name, value in values.items())

    def execute(self, session: Session, render: Callable[[], str]) -> None:
        """Run the writes in ``session``'s transaction, and announce the job (``render``: it
        as the API shows it, for the notification; SQLite's doorbell carries nothing)."""
        connection = session.connection()
        if self.one_statement:
            payload = notification_payload(self.job_id, render())
            connection.execute(
                _in_one_statement(tuple(self._statements)),
                {**self._parameters, NOTIFICATION: payload},
            )
            return
        for statement in self._statements:
            connection.execute(statement, self._parameters)
        notify_job_finished(session, self.job_id)
