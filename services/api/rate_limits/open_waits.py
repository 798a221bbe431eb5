"""A per-key cap on open waits (``GET /v1/jobs/{id}?wait=N`` and ``POST /v1/chat``), over every
API process.

A semaphore per process would let a key hold the cap on each process; instead every wait is a
row in ``open_waits`` while it lasts. Taking a slot locks the key's row (Postgres; SQLite's
``BEGIN IMMEDIATE`` serialises writers anyway), counts the key's live rows and adds one: about
1 ms, against a wait that lasts seconds. A process killed mid-wait leaves its rows behind; they
stop counting at their ``expires_at`` and the next wait of that key deletes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import delete, func, select

from services.api.problems import Problem, ProblemType
from shared.db.engine import session_scope
from shared.db.models import ApiKey, OpenWait, utcnow

# a wait's row outlives the wait by this much: the request's own work before and after waiting
SLOT_MARGIN_S = 30.0


class WaitSlots:
    def __init__(self, database_url: str, cap: int) -> None:
        self.database_url = database_url
        self.cap = cap

    @contextmanager
    def hold(self, key_id: uuid.UUID, wait_s: float) -> Iterator[None]:
        """Hold one of the key's wait slots for up to ``wait_s``; 429 if all are taken."""
        if not self.cap:
            yield
            return
        slot = self._acquire(key_id, wait_s)
        try:
            yield
        finally:
            with session_scope(self.database_url) as session:
                session.execute(delete(OpenWait).where(OpenWait.id == slot))

    def _acquire(self, key_id: uuid.UUID, wait_s: float) -> uuid.UUID:
        now = utcnow()
        with session_scope(self.database_url) as session:
            # one slot-taker per key at a time, or two could both see cap - 1 and both go in
            session.execute(select(ApiKey.id).where(ApiKey.id == key_id).with_for_update())
            session.execute(
                delete(OpenWait).where(OpenWait.api_key_id == key_id, OpenWait.expires_at <= now)
            )
            held = session.scalar(
                select(func.count()).select_from(OpenWait).where(OpenWait.api_key_id == key_id)
            )
            if (held or 0) >= self.cap:
                raise Problem(
                    ProblemType.TOO_MANY_WAITS,
                    f"This API key already holds {held} open waits (long-polls and /v1/chat; "
                    f"limit {self.cap}); retry when one has finished, or poll without ?wait.",
                    headers={"Retry-After": "1"},
                    limit=self.cap,
                )
            slot = OpenWait(
                id=uuid.uuid4(),
                api_key_id=key_id,
                expires_at=now + timedelta(seconds=wait_s + SLOT_MARGIN_S),
            )
            session.add(slot)
            return slot.id
