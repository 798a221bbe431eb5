"""Ending a batch: once the last of its jobs is terminal the batch becomes ``completed`` (or
``cancelled``, after a cancel), exactly once, and its webhook event is queued in that same
transaction, for the existing delivery machinery to send.

Who calls ``finish_batch_if_done``: whoever makes a batch job terminal, in the transaction that
does it and after the job's own update: post-processing when it stores an outcome
(services/postprocess/results.py), the API when it cancels a batch. The API's batch feeder also
calls it for every open batch whose jobs have all ended, which covers a batch job cancelled on
its own (``POST /v1/jobs/{id}/cancel``) and any other path a job may end by.

Exactly once, with several post-processors finishing a batch's last jobs at the same moment:
the batch row is locked (``FOR UPDATE``) before its open jobs are looked for. Without the lock,
two transactions that each finish one of the last two jobs would each still see the other's job
running (neither has committed) and neither would end the batch. With it, the second waits for
the first to commit, and under READ COMMITTED its next statement sees the first's job ended: it
ends the batch. The status only moves from an open one, so it moves once; and the delivery is
unique per batch and event. Locks are taken job first, then batch, everywhere (a batch cancel
updates its jobs before it locks the batch), so finishers and cancels cannot deadlock. SQLite
runs one writing transaction at a time (``BEGIN IMMEDIATE``), which orders them the same way.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.batch_view import BatchView, count_jobs_by_status
from shared.db.models import Batch, BatchStatus, DeliveryStatus, Job, JobStatus, WebhookDelivery
from shared.logs import get_logger

log = get_logger(__name__)

OPEN_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.IN_PROGRESS)
OPEN_BATCH_STATUSES = (BatchStatus.IN_PROGRESS, BatchStatus.CANCELLING)
EVENT_FOR_BATCH_STATUS = {
    BatchStatus.COMPLETED: "batch.completed",
    BatchStatus.CANCELLED: "batch.cancelled",
}


def finish_batch_if_done(
    session: Session, batch_id: uuid.UUID, now: datetime, *, first_attempt_at: datetime
) -> list[str]:
    """End the batch if none of its jobs is open any more; returns the id of the webhook
    delivery queued for it (none if it is not done, was ended already, or has no webhook).

    ``first_attempt_at``: when the delivery sweeper may start the first attempt (now, unless
    the caller hands the returned id on itself and the sweeper should keep off it meanwhile).
    """
    session.flush()  # this transaction's own job updates are part of what is counted
    batch = session.scalars(
        select(Batch)
        .where(Batch.id == batch_id)
        .with_for_update()
        # the row as it is once locked, not as this session may have read it before
        .execution_options(populate_existing=True)
    ).one_or_none()
    if batch is None or batch.status not in OPEN_BATCH_STATUSES:
        return []
    still_open = session.scalar(
        select(Job.id).where(Job.batch_id == batch_id, Job.status.in_(OPEN_JOB_STATUSES)).limit(1)
    )
    if still_open is not None:
        return []
    cancelled = batch.status is BatchStatus.CANCELLING
    batch.status = BatchStatus.CANCELLED if cancelled else BatchStatus.COMPLETED
    batch.completed_at = now
    log.info("batch_finished", batch_id=str(batch.id), status=batch.status.value)
    if not batch.webhook_url:
        return []
    event_type = EVENT_FOR_BATCH_STATUS[batch.status]
    view = BatchView.from_batch(batch, count_jobs_by_status(session, [batch.id])[batch.id])
    delivery = WebhookDelivery(
        id=new_delivery_id(),
        batch_id=batch.id,
        api_key_id=batch.api_key_id,
        event_type=event_type,
        url=batch.webhook_url,
        # the Standard Webhooks envelope of job events, with the batch as ``data``; it holds
        # no customer texts, so there is nothing to anonymise or erase in it
        payload={
            "type": event_type,
            "timestamp": now.isoformat(),
            "data": view.model_dump(mode="json"),
        },
        status=DeliveryStatus.PENDING,
        next_attempt_at=first_attempt_at,
    )
    session.add(delivery)
    return [delivery.id]


def new_delivery_id() -> str:
    """A delivery id of the form job events have (the ``webhook-id`` header)."""
    return f"msg_{uuid.uuid4().hex}"
