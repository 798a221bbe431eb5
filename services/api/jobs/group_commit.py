"""Group commit for submitted jobs: the jobs that concurrent requests of one API process want
stored go to the database together, in one transaction and one commit.

Why: under load each submit was its own statement and its own commit, so every job paid a
connection checkout, a round trip, a WAL flush (``fdatasync``) and the Python work of one
statement. A writer thread takes whatever requests are waiting (nothing is held back to wait
for company: a lone request is written at once, and the next ones gather while it is), stores
their rows in one transaction and answers them. A request returns only once the
statement holding its row has committed, so nothing acknowledged can be lost.

If a batch fails (a constraint one row breaks: its API key was just deleted, say), nothing of
it was stored, and each of its requests stores its own row alone: one bad row never fails the
others, and its error reaches its own request.

The batch is one ``executemany`` of the one-row statement in a transaction: psycopg sends the
rows' statements in one pipeline and the commit follows. A batch of one row (every submit at
low load) is that one statement alone, which is atomic without a transaction: one round trip
instead of three (BEGIN, the statement, COMMIT). (One multi-row INSERT was tried: it
cannot be cached by SQLAlchemy, and compiling it for every batch made the API slower than
without batches: 370 submits/s against 570.)
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Executable

from shared.db.engine import autocommit, transaction
from shared.logs import get_logger
from shared.metrics import JOB_WRITE_BATCH

log = get_logger(__name__)

MAX_BATCH = 32
"""Most rows in one transaction: above the requests one API process has in flight at once."""


class WriteAlone(Exception):
    """The batch holding this row failed and stored nothing: store the row on its own."""


@dataclass
class _Pending:
    parameters: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class GroupCommit:
    """Rows of one kind, stored by one thread in batches of what is waiting."""

    def __init__(self, database_url: str, statement: Executable) -> None:
        self.database_url = database_url
        self.statement = statement
        self._waiting: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def write(self, parameters: dict[str, Any]) -> None:
        """Store one row (the statement's parameters); returns once the statement holding it
        has committed. If that was a batch that failed, stores the row alone; raises what
        storing it raised."""
        pending = _Pending(parameters)
        self._ensure_thread()
        self._waiting.put(pending)
        pending.done.wait()
        if isinstance(pending.error, WriteAlone):
            self._write_alone(parameters)
        elif pending.error is not None:
            raise pending.error

    @property
    def waiting(self) -> int:
        """Rows handed to ``write`` that the writer has not taken yet."""
        return self._waiting.qsize()

    def _write_alone(self, parameters: dict[str, Any]) -> None:
        """Store one row with a statement of its own, committed on its own."""
        with autocommit(self.database_url) as connection:
            connection.execute(self.statement, parameters)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="job-group-commit", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while True:
            batch = [self._waiting.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)

    def _write(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:
                # one statement is atomic on its own: no BEGIN and COMMIT round trips
                self._write_alone(batch[0].parameters)
            else:
                with transaction(self.database_url) as connection:
                    connection.execute(self.statement, [pending.parameters for pending in batch])
            JOB_WRITE_BATCH.observe(len(batch))
        except BaseException as error:
            # a lone row's error is its own; a batch's may be any row's: each is tried alone
            alone = len(batch) > 1 and isinstance(error, Exception)
            if alone:
                log.info("group_commit_split", rows=len(batch), error=repr(error))
            for pending in batch:
                pending.error = WriteAlone() if alone else error
            if not isinstance(error, Exception):
                raise
        finally:
            for pending in batch:
                pending.done.set()
