"""What the system holds right now, read from the broker and the database: the queues (depth
and consumers), the outbox backlog, dead webhooks and, on request, jobs by status. The API's
``/metrics`` reads it at each scrape and ``chatq status`` prints it."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import DeliveryStatus, Job, OutboxMessage, WebhookDelivery
from shared.messaging.broker import broker_connection
from shared.messaging.topology import ALL_QUEUES, queue_state


@dataclass(frozen=True)
class QueueState:
    ready: int  # messages waiting (not counting those delivered and not yet acknowledged)
    consumers: int  # e.g. the inference workers on chat.inference


@dataclass
class SystemState:
    queues: dict[str, QueueState] = field(default_factory=dict)
    outbox_backlog: int = 0
    webhooks_dead: int = 0
    jobs_by_status: dict[str, int] = field(default_factory=dict)


def read_database_state(settings: Settings, state: SystemState, *, jobs: bool = False) -> None:
    with session_scope(settings.database_url) as session:
        state.outbox_backlog = session.scalar(select(func.count(OutboxMessage.id))) or 0
        state.webhooks_dead = (
            session.scalar(
                select(func.count(WebhookDelivery.id)).where(
                    WebhookDelivery.status == DeliveryStatus.DEAD
                )
            )
            or 0
        )
        if jobs:  # a scan of the jobs table: for an operator's command, not every scrape
            rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
            state.jobs_by_status = {status.value: count for status, count in rows}


def read_broker_state(settings: Settings, state: SystemState) -> None:
    with broker_connection(settings) as connection:
        connection.ensure_connection(max_retries=1)
        for queue in ALL_QUEUES:
            ready, consumers = queue_state(connection, queue)
            state.queues[queue.name] = QueueState(ready, consumers)
