"""The outbox on the real database and broker (embedded, and Postgres + RabbitMQ): a request
whose publish was never confirmed reaches the queue through the relay, once; rows are leased,
so no transaction is open while the relay waits for the broker and no two relays take a row."""

from __future__ import annotations

import sqlite3
import uuid
from contextlib import closing
from datetime import timedelta
from typing import Any

import pytest
from kombu.exceptions import OperationalError
from sqlalchemy import func, select

from services.api.outbox import Outbox, OutboxRelay
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import OutboxMessage, utcnow
from shared.messaging.broker import broker_connection
from shared.messaging.topology import INFERENCE_QUEUE
from tests.integration.factories import make_job

pytestmark = pytest.mark.integration

UNREACHABLE_BROKER = "amqp://guest:guest@127.0.0.1:9//"


def store_request(outbox: Outbox, settings: Settings) -> tuple[uuid.UUID, dict[str, Any]]:
    """A job and its outbox row, stored as the API stores them; never published."""
    key = create_api_key(settings.database_url, f"shop-{uuid.uuid4().hex[:8]}")
    job = make_job(settings.database_url, key.id)
    payload = {"job_id": str(job.id), "query": job.query}
    with session_scope(settings.database_url) as session:
        row_id = outbox.add(session, job.id, payload, 3, utcnow())
    return row_id, payload


def outbox_rows(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        return session.scalar(select(func.count()).select_from(OutboxMessage)) or 0


def next_attempt_in_s(settings: Settings, row_id: uuid.UUID) -> float:
    with session_scope(settings.database_url) as session:
        row = session.get(OutboxMessage, row_id)
        assert row is not None
        return (row.next_attempt_at - utcnow()).total_seconds()


def queued(settings: Settings) -> list[Any]:
    """Take every message off ``chat.inference``; their bodies."""
    bodies = []
    with broker_connection(settings) as connection:
        queue = INFERENCE_QUEUE(connection.default_channel)
        while (message := queue.get(no_ack=True)) is not None:
            bodies.append(message.decode())
    return bodies


def make_due(settings: Settings, row_id: uuid.UUID) -> None:
    """As if the storing process's lease (CHATQ_OUTBOX_GRACE_S) had passed."""
    with session_scope(settings.database_url) as session:
        row = session.get(OutboxMessage, row_id)
        assert row is not None
        row.next_attempt_at = utcnow() - timedelta(seconds=1)


def test_a_confirmed_publish_leaves_nothing_to_relay(backend_settings: Settings) -> None:
    outbox = Outbox(backend_settings)
    row_id, payload = store_request(outbox, backend_settings)
    assert outbox.publish(row_id, payload, 3)
    outbox.flush_confirmed()  # or its thread did already
    assert outbox_rows(backend_settings) == 0
    assert queued(backend_settings) == [payload]


def test_an_unconfirmed_request_is_relayed_once_its_grace_has_passed(
    backend_settings: Settings,
) -> None:
    outbox = Outbox(backend_settings.model_copy(update={"outbox_grace_s": 30.0}))
    row_id, payload = store_request(outbox, backend_settings)
    # within the grace the storing process may still be publishing: the relay leaves it
    assert 25 < next_attempt_in_s(backend_settings, row_id) <= 30
    assert outbox.relay_once() == 0
    make_due(backend_settings, row_id)
    assert OutboxRelay(outbox).run_once() == 1
    assert outbox_rows(backend_settings) == 0
    assert queued(backend_settings) == [payload]
    assert outbox.relay_once() == 0  # published once


def test_a_publish_the_api_could_not_confirm_stays_for_the_relay(
    backend_settings: Settings,
) -> None:
    away = Outbox(backend_settings.model_copy(update={"broker_url": UNREACHABLE_BROKER}))
    row_id, payload = store_request(away, backend_settings)
    assert not away.publish(row_id, payload, 3)  # accepted all the same
    assert away.flush_confirmed() == 0
    assert outbox_rows(backend_settings) == 1
    make_due(backend_settings, row_id)
    assert Outbox(backend_settings).relay_once() == 1
    assert queued(backend_settings) == [payload]


class WatchedOutbox(Outbox):
    """Publishes for real, and while each publish is under way runs ``during_publish``."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.seen: list[Any] = []

    def during_publish(self) -> Any:
        raise NotImplementedError

    def send(self, payload: dict[str, Any], priority: int) -> None:
        self.seen.append(self.during_publish())
        super().send(payload, priority)


def test_a_relay_holds_no_transaction_and_no_other_relay_takes_its_rows(
    backend_settings: Settings,
) -> None:
    settings = backend_settings
    rows = [store_request(Outbox(settings), settings) for _ in range(3)]
    for row_id, _payload in rows:
        make_due(settings, row_id)
    other_relay = Outbox(settings)

    class Relay(WatchedOutbox):
        def during_publish(self) -> Any:
            if settings.database_url.startswith("sqlite"):
                # SQLite has one write lock, which a transaction left open would hold
                path = settings.database_url.removeprefix("sqlite:///")
                with closing(sqlite3.connect(path, timeout=0.5)) as connection:
                    connection.execute("BEGIN IMMEDIATE")
                    connection.execute("ROLLBACK")
            else:
                # rows locked by a transaction left open would make NOWAIT fail
                with session_scope(settings.database_url) as session:
                    session.execute(select(OutboxMessage.id).with_for_update(nowait=True)).all()
            return other_relay.relay_once()

    relay = Relay(settings)
    assert relay.relay_once() == 3
    assert relay.seen == [0, 0, 0]  # the other relay found every row leased
    assert sorted(body["job_id"] for body in queued(settings)) == sorted(
        payload["job_id"] for _, payload in rows
    )


def test_rows_a_failed_publish_left_are_released_to_the_next_round(
    backend_settings: Settings,
) -> None:
    settings = backend_settings.model_copy(update={"outbox_relay_interval_s": 5.0})
    row_id, payload = store_request(Outbox(settings), settings)
    make_due(settings, row_id)
    away = Outbox(settings.model_copy(update={"broker_url": UNREACHABLE_BROKER}))
    with pytest.raises(OperationalError):
        away.relay_once()
    # not held for the whole lease (over a minute): due again at the next round
    assert 0 < next_attempt_in_s(settings, row_id) <= 5.0
    make_due(settings, row_id)
    assert Outbox(settings).relay_once() == 1
    assert queued(settings) == [payload]
