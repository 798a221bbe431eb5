"""The outbox relay: publishes inference requests whose publish the API could not confirm.

The API stores each job and its request (the outbox row) in one transaction, publishes, and
deletes the row once the broker confirmed. A row still there after ``outbox_grace_s`` was never
confirmed (broker down, API killed mid-publish); the relay publishes it and deletes it. A
request may then reach the queue twice, which the workers tolerate: a job runs only while it
is ``in_progress`` and its result is stored once.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select

from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import OutboxMessage, utcnow
from shared.messaging.broker import broker_connection, publish_inference_request
from shared.periodic import PeriodicWork

BATCH = 200


class OutboxRelay(PeriodicWork):
    name = "outbox_relay"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.outbox_relay_interval_s)
        self.settings = settings

    def run_once(self) -> int:
        return self.relay_once()

    def relay_once(self) -> int:
        """Publish and delete the overdue outbox rows; returns how many."""
        cutoff = utcnow() - timedelta(seconds=self.settings.outbox_grace_s)
        relayed = 0
        with session_scope(self.settings.database_url) as session:
            rows = session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.created_at <= cutoff)
                .order_by(OutboxMessage.created_at)
                .limit(BATCH)
                # several workers relay at once; each row goes to one of them
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return 0
            with broker_connection(self.settings) as connection:
                producer = connection.Producer()
                for row in rows:
                    publish_inference_request(
                        producer, row.payload, row.priority, self.settings.publish_timeout_s
                    )
                    session.execute(delete(OutboxMessage).where(OutboxMessage.id == row.id))
                    relayed += 1
        return relayed
