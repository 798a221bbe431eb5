"""The delivery sweeper: starts webhook attempts whose time has come.

The first attempt of every delivery is sent at once by ``finalize_job``; retries (and deliveries
whose first hand-off was lost in a crash, and dead ones re-sent through the API) wait in the
database with ``next_attempt_at``. Each delivery worker runs one sweeper thread; a due
delivery is leased (its ``next_attempt_at`` pushed ahead) in the same transaction that selects
it, so two sweepers never start the same attempt, and a lease that lapses (its worker died)
makes the delivery due again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import DeliveryStatus, WebhookDelivery, utcnow
from shared.periodic import PeriodicWork

BATCH = 100


class DeliverySweeper(PeriodicWork):
    name = "delivery_sweeper"

    def __init__(self, settings: Settings, enqueue: Callable[[str], None]) -> None:
        super().__init__(settings.webhook_sweep_interval_s)
        self.settings = settings
        self.enqueue = enqueue

    def run_once(self) -> int:
        return self.sweep_once()

    def sweep_once(self) -> int:
        """Lease and enqueue the due deliveries; returns how many."""
        now = utcnow()
        lease = timedelta(seconds=self.settings.webhook_timeout_s * 3 + 30)
        with session_scope(self.settings.database_url) as session:
            due = session.scalars(
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                    WebhookDelivery.next_attempt_at <= now,
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            ).all()
            for delivery in due:
                delivery.next_attempt_at = now + lease
            ids = [delivery.id for delivery in due]
        for delivery_id in ids:
            self.enqueue(delivery_id)
        return len(ids)
