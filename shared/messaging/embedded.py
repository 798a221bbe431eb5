"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, tuned for chatq.

Four changes to kombu's transport, which otherwise works across processes here:
- ``polling_interval`` is taken from the transport options instead of being handed to
  ``create_engine`` (which rejects it); kombu's default of 1 s would add a second to every hop.
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

from json import dumps, loads
from queue import Empty
from typing import Any

from kombu.transport import sqlalchemy as kombu_sqla
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import text

from shared.db.engine import create_db_engine
from shared.messaging.streams import STREAM_QUEUE_PREFIX


class Channel(kombu_sqla.Channel):
    # kombu's SQLAlchemy channel names the message ``payload``, its virtual base ``message``: no
    # signature matches both, and kombu passes it by position.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if not queue.startswith(STREAM_QUEUE_PREFIX):
            super()._put(queue, payload, **kwargs)
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

    def queue_delete(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        # kombu's virtual channel deletes a queue once per binding; a stream queue has none
        # (the default exchange routes to it by name), so its row is deleted here
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


class Transport(kombu_sqla.Transport):
    Channel = Channel
    polling_interval = 0.02
