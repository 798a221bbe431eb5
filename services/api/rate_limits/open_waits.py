"""A per-key cap on open waits (``GET /v1/jobs/{id}?wait=N`` and ``POST /v1/chat``), over every
API process.

A semaphore per process would let a key hold the cap on each process; instead every wait is a
row in ``open_waits`` while it lasts. Taking a slot locks the key's row (Postgres; SQLite's
``BEGIN IMMEDIATE`` serialises writers anyway), then adds a row only while the key's live rows
are fewer than the cap (one INSERT … SELECT); giving it back is one DELETE outside a
transaction. A process killed mid-wait leaves its rows behind; they stop counting at their
``expires_at`` and the key's next wait to end deletes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Integer, bindparam, delete, func, insert, or_, select

from services.api.problems import Problem, ProblemType
from shared.db.engine import autocommit, transaction
from shared.db.models import ApiKey, OpenWait, utcnow

# a wait's row outlives the wait by this much: the request's own work before and after waiting
SLOT_MARGIN_S = 30.0

# Built once, run as Core statements: a wait takes a slot and gives it back on every
# long-poll, and the ORM's unit of work cost more than the statements. The parameters are
# typed by their columns (a UUID is stored as hex text on SQLite).
_KEY = bindparam("key", type_=OpenWait.__table__.c.api_key_id.type)
_NOW = bindparam("now", type_=OpenWait.__table__.c.expires_at.type)
_LOCK_KEY = select(ApiKey.id).where(ApiKey.id == _KEY).with_for_update()
_LIVE = (OpenWait.api_key_id == _KEY) & (OpenWait.expires_at > _NOW)
_HELD = select(func.count()).select_from(OpenWait).where(_LIVE)
# a slot is added only while the key's live slots are fewer than the cap
_TAKE = (
    insert(OpenWait)
    .from_select(
        ["id", "api_key_id", "expires_at"],
        select(
            bindparam("slot", type_=OpenWait.__table__.c.id.type),
            _KEY,
            bindparam("expires", type_=OpenWait.__table__.c.expires_at.type),
        ).where(_HELD.scalar_subquery() < bindparam("cap", type_=Integer)),
    )
    .returning(OpenWait.id)
)
# giving a slot back also clears the key's slots left behind by killed processes
_GIVE_BACK = delete(OpenWait).where(
    or_(
        OpenWait.id == bindparam("slot"),
        (OpenWait.api_key_id == _KEY) & (OpenWait.expires_at <= _NOW),
    )
)


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
            # a slot lost to a database crash only lapses sooner (``autocommit``)
            with autocommit(self.database_url, durable=False) as connection:
                connection.execute(_GIVE_BACK, {"slot": slot, "key": key_id, "now": utcnow()})

    def _acquire(self, key_id: uuid.UUID, wait_s: float) -> uuid.UUID:
        now = utcnow()
        slot = uuid.uuid4()
        with transaction(self.database_url, durable=False) as connection:
            # one slot-taker per key at a time, or two could both see cap - 1 and both go in
            connection.execute(_LOCK_KEY, {"key": key_id})
            taken = connection.execute(
                _TAKE,
                {
                    "slot": slot,
                    "key": key_id,
                    "expires": now + timedelta(seconds=wait_s + SLOT_MARGIN_S),
                    "now": now,
                    "cap": self.cap,
                },
            )
            if taken.first() is not None:
                return slot
            held = connection.scalar(_HELD, {"key": key_id, "now": now})
        raise Problem(
            ProblemType.TOO_MANY_WAITS,
            f"This API key already holds {held} open waits (long-polls and /v1/chat; "
            f"limit {self.cap}); retry when one has finished, or poll without ?wait.",
            headers={"Retry-After": "1"},
            limit=self.cap,
        )
