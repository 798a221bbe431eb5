"""The outbox: how an accepted job's inference request reaches ``chat.inference``, in one place.

- **Store.** ``Outbox.add`` puts the request (the outbox row) in the transaction that stores the
  job: the job is accepted once that commits. On Postgres a job that needs nothing read first
  is stored with its request in one statement instead (``insert_with_job``,
  ``Outbox.with_job``): as atomic, in one round trip where the transaction takes four; the
  jobs that concurrent requests submit share one transaction and its commit
  (``services/api/jobs/group_commit.py``).
- **Publish.** ``Outbox.publish`` then sends it with publisher confirms. A confirmed row is only
  a leftover; ``ConfirmedRows`` deletes those in batches from a thread, off the request path
  (deleting in the request would cost a second transaction per submit).
- **Relay.** ``OutboxRelay`` publishes the rows whose publish was never confirmed (the broker
  was down or slow, the process was killed) and deletes them.

Leases. ``next_attempt_at`` says until when a row is somebody's. The API process that stores a
row holds it for ``CHATQ_OUTBOX_GRACE_S`` while it publishes. A relay takes due rows by pushing
their ``next_attempt_at`` a lease ahead and committing, and only then publishes: no
transaction is open while the broker is waited for (on SQLite an open transaction holds the
one write lock every submit needs), and two relays never publish the same row at once. A relay
that dies leaves its lease to lapse, and the row is due again.

Where the relay runs: in every API process (``services/api/wsgi.py`` starts it). The API is the
only writer of the outbox and already holds the connection pool that publishes; it runs
wherever jobs can be accepted, whereas inference workers may be busy, scaled to zero or down
(the relay used to live there), and the post-processors are another service, which would split
the outbox over two homes. Leases make running it in many processes safe.

A request may reach the queue twice (a confirmed row whose deletion was lost; a lease that
lapsed under a live relay), which the workers tolerate: a job runs only while it is
``in_progress`` and its result is stored once.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from kombu.pools import producers
from sqlalchemy import Connection, Insert, bindparam, delete, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db.engine import autocommit, session_scope
from shared.db.models import OutboxMessage, utcnow
from shared.logs import get_logger
from shared.messaging.broker import broker_connection, publish_inference_request
from shared.periodic import PeriodicWork

log = get_logger(__name__)

RELAY_BATCH = 200
# A relay starts publishing rows of its batch for this long; the lease covers that plus the
# longest one publish may take, so it never lapses under a live relay. A relay that dies
# holds its rows this long (plus one publish) before another one takes them.
RELAY_PUBLISH_WINDOW_S = 60.0
CLEANUP_EVERY_S = 0.05
CLEANUP_BATCH = 500
BROKER_CONNECT_TIMEOUT_S = 5  # shared.messaging.broker.broker_connection's
# built once: the statement's cache key is then computed once, not per stored request
_INSERT_ROW = insert(OutboxMessage)


def longest_publish_s(settings: Settings) -> float:
    """An upper bound of one ``publish_inference_request``: up to three tries (its retry
    policy), each connecting and waiting for the confirm."""
    return 3 * (BROKER_CONNECT_TIMEOUT_S + settings.publish_timeout_s) + 1


class Outbox:
    """The outbox of one API process: stores, publishes, deletes what was confirmed, relays."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._connection = broker_connection(settings)
        self._confirmed = ConfirmedRows(settings.database_url)

    # --- store and publish (the request path) ----------------------------------------------

    def add(
        self,
        scope: Connection | Session,
        job_id: uuid.UUID,
        payload: dict[str, Any],
        priority: int,
        now: datetime,
    ) -> uuid.UUID:
        """Store the request in ``scope``'s transaction (after the job row); its id.

        One INSERT, not an ORM object: nothing reads the row back in this transaction."""
        row_id = uuid.uuid4()
        scope.execute(
            _INSERT_ROW,
            {
                "id": row_id,
                "job_id": job_id,
                "payload": payload,
                "priority": priority,
                "next_attempt_at": self._held_until(now),
            },
        )
        return row_id

    def with_job(
        self, job_row: dict[str, Any], payload: dict[str, Any], now: datetime
    ) -> tuple[dict[str, Any], uuid.UUID]:
        """The parameters of an ``insert_with_job`` statement storing a job (the job's
        columns: ``job_row``) and its request's, and the request row's id. Nothing is stored:
        the job is accepted once the statement holding these has committed."""
        row_id = uuid.uuid4()
        parameters = {
            **job_row,
            "outbox_id": row_id,
            "outbox_payload": payload,
            "outbox_next_attempt_at": self._held_until(now),
        }
        return parameters, row_id

    def _held_until(self, now: datetime) -> datetime:
        # the storing process's own lease: the relay leaves the row alone meanwhile
        return now + timedelta(seconds=self.settings.outbox_grace_s)

    def publish(self, row_id: uuid.UUID, payload: dict[str, Any], priority: int) -> bool:
        """Publish a stored request (after its transaction committed); whether it was
        confirmed. Unconfirmed, it stays in the outbox for the relay."""
        try:
            self.send(payload, priority)
        except Exception as error:
            log.warning(
                "publish_deferred_to_outbox", job_id=payload.get("job_id"), error=repr(error)
            )
            return False
        self._confirmed.add(row_id)
        return True

    def send(self, payload: dict[str, Any], priority: int) -> None:
        """Publish and (on RabbitMQ) wait for the broker's confirm; raises if it cannot."""
        timeout = self.settings.publish_timeout_s
        with producers[self._connection].acquire(block=True, timeout=timeout) as producer:
            publish_inference_request(producer, payload, priority, timeout)

    def check(self) -> None:
        """Raise unless the broker accepts a connection now."""
        with broker_connection(self.settings) as connection:
            connection.ensure_connection(max_retries=1, timeout=self.settings.publish_timeout_s)

    def flush_confirmed(self) -> int:
        """Delete the confirmed rows pending now, as the thread does on its own; returns how
        many this call deleted (once it returns, the rows confirmed before it are gone, up to a
        batch of them)."""
        return self._confirmed.flush()

    # --- relay ------------------------------------------------------------------------------

    def relay_once(self) -> int:
        """Lease up to ``RELAY_BATCH`` due rows, publish them, delete the published ones;
        returns how many were published. A publish that fails ends the round (the broker is
        away): the rows not published are released to the next round, and the error raised."""
        leased = self._lease_due_rows()
        if not leased:
            return 0
        stop_starting_at = time.monotonic() + RELAY_PUBLISH_WINDOW_S
        published: list[uuid.UUID] = []
        failure: Exception | None = None
        for row in leased:
            if time.monotonic() > stop_starting_at:
                break  # the lease would not cover another publish: the rest go next round
            try:
                self.send(row.payload, row.priority)
            except Exception as error:
                failure = error
                break
            published.append(row.id)
        not_published = [row.id for row in leased[len(published) :]]
        retry_in = self.settings.outbox_relay_interval_s if failure is not None else 0.0
        self._settle(published, not_published, retry_in)
        if failure is not None:
            raise failure
        return len(published)

    def _lease_due_rows(self) -> list[Row[tuple[uuid.UUID, dict[str, Any], int]]]:
        now = utcnow()
        lease = timedelta(seconds=RELAY_PUBLISH_WINDOW_S + longest_publish_s(self.settings))
        with session_scope(self.settings.database_url) as session:
            rows = list(
                session.execute(
                    select(OutboxMessage.id, OutboxMessage.payload, OutboxMessage.priority)
                    .where(OutboxMessage.next_attempt_at <= now)
                    .order_by(OutboxMessage.next_attempt_at)
                    .limit(RELAY_BATCH)
                    # relays in other processes skip these rows instead of waiting for them
                    .with_for_update(skip_locked=True)
                ).all()
            )
            if rows:
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_([row.id for row in rows]))
                    .values(next_attempt_at=now + lease)
                )
        return rows

    def _settle(
        self, published: list[uuid.UUID], not_published: list[uuid.UUID], retry_in_s: float
    ) -> None:
        # If this fails (the database is away) the leases lapse: the published rows are then
        # published again (a duplicate, which workers ignore) and the others are due anyway.
        with session_scope(self.settings.database_url) as session:
            if published:
                session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(published)))
            if not_published:
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(not_published))
                    .values(next_attempt_at=utcnow() + timedelta(seconds=retry_in_s))
                )


def insert_with_job(job_insert: Insert) -> Insert:
    """One statement storing a job (``job_insert``, whose ``id`` and ``priority`` parameters the
    request's row shares) and then its request's row (``outbox_id``, ``outbox_payload``,
    ``outbox_next_attempt_at``): an INSERT in a WITH clause, which Postgres runs and SQLite
    does not. Its foreign key is checked at the end of the statement, when the job exists."""
    return (
        insert(OutboxMessage)
        .values(
            id=bindparam("outbox_id"),
            job_id=bindparam("id"),
            payload=bindparam("outbox_payload"),
            priority=bindparam("priority"),
            next_attempt_at=bindparam("outbox_next_attempt_at"),
        )
        .add_cte(job_insert.cte("job"))
    )


class OutboxRelay(PeriodicWork):
    """Relays the outbox every ``CHATQ_OUTBOX_RELAY_INTERVAL_S``; a backlog (the broker was
    away) is drained batch after batch within the round."""

    name = "outbox_relay"

    def __init__(self, outbox: Outbox) -> None:
        super().__init__(outbox.settings.outbox_relay_interval_s)
        self.outbox = outbox

    def run_once(self) -> int:
        relayed = 0
        while True:
            published = self.outbox.relay_once()
            relayed += published
            if published < RELAY_BATCH:
                return relayed


class ConfirmedRows:
    """Deletes the rows whose publish the broker confirmed, in batches, from one thread.

    A row that is never deleted (process killed, database away) is published again by the
    relay once the storing process's lease has lapsed: a duplicate, which workers ignore.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._pending: queue.SimpleQueue[uuid.UUID] = queue.SimpleQueue()
        self._started = False
        self._lock = threading.Lock()
        self._flushing = threading.Lock()

    def add(self, row_id: uuid.UUID) -> None:
        """The broker confirmed this row's message: delete the row soon."""
        self._pending.put(row_id)
        if not self._started:
            with self._lock:
                if not self._started:
                    threading.Thread(target=self._loop, name="outbox-cleanup", daemon=True).start()
                    self._started = True

    def flush(self) -> int:
        """Delete what is pending now (up to a batch); returns how many rows were asked for.
        Returns after a flush under way in the thread has finished too."""
        with self._flushing:
            ids: list[uuid.UUID] = []
            while len(ids) < CLEANUP_BATCH:
                try:
                    ids.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            if ids:
                # one statement: atomic without a transaction around it; a delete a database
                # crash takes back is a duplicate publish by the relay (``autocommit``)
                with autocommit(self.database_url, durable=False) as connection:
                    connection.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
            return len(ids)

    def _loop(self) -> None:
        while True:
            # Asleep until a row is confirmed (an idle API process woke here 20 times a second
            # for nothing), then a moment for the confirms that follow it to join its DELETE.
            self._pending.put(self._pending.get())
            time.sleep(CLEANUP_EVERY_S)
            try:
                while self.flush() == CLEANUP_BATCH:
                    pass
            except Exception as error:
                log.warning("outbox_cleanup_failed", error=repr(error))
