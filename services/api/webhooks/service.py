"""A job's webhook deliveries, and re-sending the dead ones."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from services.api.auth import Caller
from services.api.context import ApiContext
from services.api.problems import Problem, ProblemType
from shared.db.engine import session_scope
from shared.db.models import DeliveryStatus, Job, WebhookAttempt, WebhookDelivery, utcnow


def _describe(delivery: WebhookDelivery, attempts: int) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_type": delivery.event_type,
        "url": delivery.url,
        "status": delivery.status.value,
        "attempts": attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "next_attempt_at": (
            delivery.next_attempt_at.isoformat()
            if delivery.next_attempt_at and delivery.status is DeliveryStatus.PENDING
            else None
        ),
        "delivered_at": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
        "created_at": delivery.created_at.isoformat(),
    }


def _deliveries(session: Any, caller: Caller, job_id: uuid.UUID) -> list[WebhookDelivery]:
    owned = session.scalar(
        select(Job.id).where(Job.id == job_id, Job.tenant_id == caller.tenant_id)
    )
    if owned is None:
        raise Problem(ProblemType.NOT_FOUND, f"No job {job_id}.")
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.job_id == job_id)
            .order_by(WebhookDelivery.created_at)
        )
    )


def _attempt_counts(session: Any, ids: list[str]) -> dict[str, int]:
    rows = session.execute(
        select(WebhookAttempt.delivery_id, func.count())
        .where(WebhookAttempt.delivery_id.in_(ids))
        .group_by(WebhookAttempt.delivery_id)
    ).all()
    return dict(rows)


def list_deliveries(ctx: ApiContext, caller: Caller, job_id: uuid.UUID) -> list[dict[str, Any]]:
    with session_scope(ctx.settings.database_url) as session:
        deliveries = _deliveries(session, caller, job_id)
        counts = _attempt_counts(session, [d.id for d in deliveries])
        return [_describe(d, counts.get(d.id, 0)) for d in deliveries]


def resend_dead(ctx: ApiContext, caller: Caller, job_id: uuid.UUID) -> list[dict[str, Any]]:
    """Give the job's dead deliveries a fresh run of the retry schedule, starting now."""
    with session_scope(ctx.settings.database_url) as session:
        dead = [d for d in _deliveries(session, caller, job_id) if d.status is DeliveryStatus.DEAD]
        if not dead:
            raise Problem(ProblemType.NOTHING_TO_RESEND, "The job has no dead webhook deliveries.")
        now = utcnow()
        for delivery in dead:
            delivery.status = DeliveryStatus.PENDING
            delivery.attempt_count = 0
            delivery.next_attempt_at = now
        counts = _attempt_counts(session, [d.id for d in dead])
        return [_describe(d, counts.get(d.id, 0)) for d in dead]
