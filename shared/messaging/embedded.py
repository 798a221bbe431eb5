"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, tuned for chatq.

Five changes to kombu's transport, which otherwise works across processes here:
- ``polling_interval`` is taken from the transport options instead of being handed to
  ``create_engine`` (which rejects it); kombu's default of 1 s would add a second to every hop.
- a publish rings the broker's doorbell (``shared/doorbell.py``) once committed, and a consumer
  that found its queues empty waits for that ring instead of sleeping out its polling interval
  (which stays the longest wait): each hop waited 10 ms on average before.
- connections use WAL and wait on locks, as the application database does;
- a consumed row is deleted rather than hidden, so the table does not grow forever;
- a token-stream message (``shared/messaging/streams.py``) for a stream queue that does not exist
  is dropped, as RabbitMQ's default exchange drops it, instead of creating the queue; deleting a
  stream queue deletes its row and messages.

Unacknowledged messages are restored when a consumer closes its channel; a consumer killed
outright loses what it held. The embedded broker is for development and demos: production runs
on RabbitMQ, where unacknowledged messages survive any consumer.
"""

from __future__ import annotations

import time
from json import dumps, loads
from queue import Empty
from typing import Any

from kombu.transport import sqlalchemy as kombu_sqla
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError, OperationalError

from shared.db.engine import create_db_engine
from shared.doorbell import BellListener, Doorbell
from shared.messaging.streams import STREAM_QUEUE_PREFIX


class Channel(kombu_sqla.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._queue_ids: dict[str, int] = {}  # queue name -> its row's id, for publishing
        super().__init__(*args, **kwargs)

    # kombu's SQLAlchemy channel names the message ``payload``, its virtual base ``message``: no
    # signature matches both, and kombu passes it by position.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self._put_row(queue, payload, **kwargs)
        self.connection.doorbell.ring(queue)  # committed: its consumers may look now

    def _put_row(self, queue: str, payload: Any, **kwargs: Any) -> None:
        if not queue.startswith(STREAM_QUEUE_PREFIX):
            self._insert_message(queue, dumps(payload))
            return
        # a stream's queue is looked up and written in one write transaction: a stream deleted
        # meanwhile is not created again, and nobody listening means the message is dropped
        self.session.commit()
        self.session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            obj = self.session.query(self.queue_cls).filter(self.queue_cls.name == queue).first()
            if obj is not None:
                self.session.add(self.message_cls(dumps(payload), obj))
        finally:
            self.session.commit()

    def _insert_message(self, queue: str, body: str) -> None:
        """kombu's put as one Core INSERT, the queue's row id remembered: kombu looked the
        queue up and ran the ORM's unit of work for every message, which on 2 cores made a
        publish take milliseconds."""
        for attempt in range(2):
            queue_id = self._queue_ids.get(queue)
            if queue_id is None:
                queue_id = self._queue_ids[queue] = self._get_or_create(queue).id
            try:
                self.session.execute(
                    insert(self.message_cls.__table__).values(
                        queue_id=queue_id, payload=body, visible=True, version=1
                    )
                )
                self.session.commit()
                return
            except IntegrityError:
                # its queue was deleted since (the foreign key refuses the row): look it up again
                self.session.rollback()
                self._queue_ids.pop(queue, None)
                if attempt:
                    raise
            except OperationalError:
                self.session.rollback()  # the publish fails and can be retried
                raise

    def queue_delete(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        # kombu's virtual channel deletes a queue once per binding; a stream queue has none
        # (the default exchange routes to it by name), so its row is deleted here
        self._queue_ids.pop(queue, None)
        deleted = super().queue_delete(queue, *args, **kwargs)
        if queue.startswith(STREAM_QUEUE_PREFIX):
            self._delete(queue)
        return deleted

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        obj = self.session.query(self.queue_cls).filter(self.queue_cls.name == queue).first()
        if obj is not None:
            self.session.query(self.message_cls).filter(self.message_cls.queue_id == obj.id).delete(
                synchronize_session=False
            )
            self.session.delete(obj)
        self.session.commit()

    def _engine_from_config(self) -> Any:
        # kombu's sessions stay open between polls: they must not hold a write lock meanwhile.
        return create_db_engine(self.connection.client.hostname, immediate_transactions=False)

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        # ``timeout`` is the virtual channel's signature; kombu polls this transport without one.
        obj = self._get_or_create(queue)
        if not self._has_visible(obj.id):
            # an empty look takes no lock: a write lock for every look made each publish
            # wait behind the consumers' looks (SQLite's busy handler sleeps in steps of ms)
            raise Empty()
        self.session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            message = (
                self.session.query(self.message_cls)
                .filter(self.message_cls.queue_id == obj.id)
                .filter(self.message_cls.visible.is_(True))
                .order_by(self.message_cls.sent_at, self.message_cls.id)
                .limit(1)
                .first()
            )
            if message is None:
                raise Empty()
            payload = loads(bytes_to_str(message.payload))
            self.session.delete(message)
            return payload
        finally:
            self.session.commit()

    def _has_visible(self, queue_id: int) -> bool:
        # a plain read in WAL mode: it neither takes nor waits for the write lock
        found = (
            self.session.query(self.message_cls.id)
            .filter(self.message_cls.queue_id == queue_id)
            .filter(self.message_cls.visible.is_(True))
            .limit(1)
            .first()
        )
        self.session.commit()  # ends the read: its snapshot must not outlive the look
        return found is not None


class Transport(kombu_sqla.Transport):
    Channel = Channel
    polling_interval = 0.02

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.doorbell = Doorbell(f"{client.hostname}#broker")
        self._listener: BellListener | None = None
        self._listening = False

    def drain_events(self, connection: Any, timeout: float | None = None, **_kwargs: Any) -> None:
        """kombu's loop (one message, or ``TimeoutError`` once ``timeout`` has passed),
        waiting for the doorbell between empty looks instead of sleeping."""
        started = time.monotonic()
        interval = self.polling_interval
        if timeout and interval and interval > timeout:
            interval = timeout
        listener = self._bell_listener()
        cycle: Any = self.cycle  # typed as unset in kombu's stubs; made in __init__
        while True:
            try:
                cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                if timeout is not None and time.monotonic() - started >= timeout:
                    raise TimeoutError() from None
                if interval is None:
                    continue
                if listener is None:
                    time.sleep(interval)
                else:
                    listener.wait(interval)

    def _bell_listener(self) -> BellListener | None:
        """The listener, subscribed to the queues consumed now. Made and subscribed before
        the look: a ring after a look that found nothing waits in the socket for the wait
        that follows it."""
        if not self._listening:
            self._listening = True
            self._listener = self.doorbell.listen()
        if self._listener is not None:
            channels: Any = self.channels  # typed as unset in kombu's stubs
            consumed = {queue for channel in channels for queue in channel._active_queues}
            subscribed = self._listener.topics
            for queue in consumed - subscribed:
                self._listener.subscribe(queue)
            for queue in subscribed - consumed:
                self._listener.unsubscribe(queue)
        return self._listener

    def close_connection(self, connection: Any) -> None:
        super().close_connection(connection)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            self._listening = False
