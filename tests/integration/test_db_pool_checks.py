"""The checks a pooled Postgres connection gets before it is handed out (shared/db/engine.py):
a busy pool costs no ping, a connection idle past ``PING_AFTER_IDLE_S`` is pinged, and one the
server closed (a restart, a terminated backend) is replaced before a request uses it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from shared.db import engine as db_engine
from shared.db.engine import create_db_engine
from tests.conftest import NamespaceFactory

pytestmark = pytest.mark.integration


@pytest.fixture
def engines(server_namespace_factory: NamespaceFactory) -> Iterator[tuple[Engine, Engine]]:
    """chatq's engine for a fresh Postgres database, and a plain one to watch it from."""
    url = server_namespace_factory().database_url
    engine = create_db_engine(url)
    observer = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    yield engine, observer
    engine.dispose()
    observer.dispose()


def backend_pid(connection: Connection) -> int:
    pid = connection.scalar(text("SELECT pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


def last_statement(observer: Engine, pid: int) -> str:
    """What the backend ``pid`` ran last (a ping shows here: psycopg's is ``;``)."""
    with observer.connect() as connection:
        statement = connection.scalar(
            text("SELECT query FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        )
    assert isinstance(statement, str)
    return statement


def used_once(engine: Engine) -> int:
    """Check a connection out, use it, give it back; the backend's pid."""
    with engine.connect() as connection:
        pid = backend_pid(connection)
        connection.execute(text("SELECT 'used'"))
        connection.commit()
    return pid


def test_a_connection_taken_again_soon_is_not_pinged(engines: tuple[Engine, Engine]) -> None:
    engine, observer = engines
    pid = used_once(engine)
    before = last_statement(observer, pid)
    with engine.connect() as connection:
        assert connection.connection.driver_connection.info.backend_pid == pid  # the same one
        assert last_statement(observer, pid) == before  # handed out without a round trip


def test_a_connection_idle_past_the_limit_is_pinged(
    engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, observer = engines
    pid = used_once(engine)
    before = last_statement(observer, pid)
    monkeypatch.setattr(db_engine, "PING_AFTER_IDLE_S", 0.0)  # every return is idle "long"
    with engine.connect() as connection:
        assert connection.connection.driver_connection.info.backend_pid == pid
        assert last_statement(observer, pid) != before  # the ping ran on it


def test_a_connection_the_server_closed_is_replaced_before_use(
    engines: tuple[Engine, Engine],
) -> None:
    engine, observer = engines
    pid = used_once(engine)
    with observer.connect() as connection:
        assert connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    give_up_at = time.monotonic() + 10
    while time.monotonic() < give_up_at:
        with observer.connect() as connection:
            gone = not connection.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            )
        if gone:
            break
        time.sleep(0.02)
    # within the idle limit, so no ping: only what the server sent tells it closed
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT 1")) == 1
        assert backend_pid(connection) != pid


def test_only_writes_that_may_be_lost_skip_waiting_for_the_disk(
    server_namespace_factory: NamespaceFactory,
) -> None:
    url = server_namespace_factory().database_url
    try:
        with db_engine.autocommit(url) as durable:
            assert durable.scalar(text("SHOW synchronous_commit")) == "on"
        with db_engine.transaction(url) as durable:
            assert durable.scalar(text("SHOW synchronous_commit")) == "on"
        with db_engine.autocommit(url, durable=False) as lax:
            assert lax.scalar(text("SHOW synchronous_commit")) == "off"
        with db_engine.transaction(url, durable=False) as lax:
            assert lax.scalar(text("SHOW synchronous_commit")) == "off"
        # the durable pool is not touched by the other one's setting
        with db_engine.session_scope(url) as session:
            assert session.scalar(text("SHOW synchronous_commit")) == "on"
    finally:
        db_engine.dispose_engine(url)
