"""Deleting confirmed outbox rows off the request path.

Once the broker confirmed a job's publish its outbox row is only a leftover; deleting it in the
request would cost a second transaction per submit. The rows are collected and deleted in
batches by one thread per API process. A row that is never deleted (process killed, database
away) is republished by the relay after ``CHATQ_OUTBOX_GRACE_S``: a duplicate message, which
workers ignore.
"""

from __future__ import annotations

import queue
import threading
import uuid

from sqlalchemy import delete

from shared.db.engine import session_scope
from shared.db.models import OutboxMessage
from shared.logs import get_logger

log = get_logger(__name__)

FLUSH_EVERY_S = 0.05
MAX_BATCH = 500


class OutboxCleanup:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._pending: queue.SimpleQueue[uuid.UUID] = queue.SimpleQueue()
        self._started = False
        self._lock = threading.Lock()

    def confirmed(self, outbox_id: uuid.UUID) -> None:
        """The broker confirmed this row's message: delete the row soon."""
        self._pending.put(outbox_id)
        if not self._started:
            with self._lock:
                if not self._started:
                    threading.Thread(target=self._loop, name="outbox-cleanup", daemon=True).start()
                    self._started = True

    def flush(self) -> int:
        """Delete what is pending now; returns how many rows were asked for."""
        ids: list[uuid.UUID] = []
        while len(ids) < MAX_BATCH:
            try:
                ids.append(self._pending.get_nowait())
            except queue.Empty:
                break
        if ids:
            with session_scope(self.database_url) as session:
                session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
        return len(ids)

    def _loop(self) -> None:
        while True:
            threading.Event().wait(FLUSH_EVERY_S)
            try:
                while self.flush() == MAX_BATCH:
                    pass
            except Exception as error:
                log.warning("outbox_cleanup_failed", error=repr(error))
