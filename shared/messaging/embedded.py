"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, tuned for chatq.

Three changes to kombu's transport, which otherwise works across processes here:
- ``polling_interval`` is taken from the transport options instead of being handed to
  ``create_engine`` (which rejects it); kombu's default of 1 s would add a second to every hop.
- connections use WAL and wait on locks, as the application database does;
- a consumed row is deleted rather than hidden, so the table does not grow forever.

Unacknowledged messages are restored when a consumer closes its channel; a consumer killed
outright loses what it held. The embedded broker is for development and demos: production runs
on RabbitMQ, where unacknowledged messages survive any consumer.
"""

from __future__ import annotations

from json import loads
from queue import Empty
from typing import Any

from kombu.transport import sqlalchemy as kombu_sqla
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import text

from shared.db.engine import create_db_engine


class Channel(kombu_sqla.Channel):
    def _engine_from_config(self) -> Any:
        # kombu's sessions stay open between polls: they must not hold a write lock meanwhile.
        return create_db_engine(self.connection.client.hostname, immediate_transactions=False)

    def _get(self, queue: str) -> Any:
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
