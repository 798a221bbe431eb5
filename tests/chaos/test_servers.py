"""The private servers behind the chaos tests really are private, durable and restartable."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import amqp
import kombu
import psycopg
import pytest

from tests.chaos.servers import PrivatePostgres, PrivateRabbitMQ, _port_open

QUEUE = "chaos.durable"


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbitMQ]:
    """One node for the module (a boot costs ~3s); each test starts it if it is down."""
    node = PrivateRabbitMQ(tmp_path_factory.mktemp("rabbit"))
    try:
        yield node
    finally:
        node.destroy()


@pytest.fixture(scope="session")
def pg_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pg-cache")


@pytest.fixture
def postgres(tmp_path: Path, pg_cache: Path) -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(tmp_path / "pg", pg_cache)
    try:
        yield server
    finally:
        server.destroy()


def _publish_persistent(node: PrivateRabbitMQ, body: bytes) -> None:
    """Publish with publisher confirms, so the broker has the message on disk on return."""
    with kombu.Connection(node.url, transport_options={"confirm_publish": True}) as conn:
        channel = conn.default_channel
        channel.queue_declare(QUEUE, durable=True, auto_delete=False)
        channel.basic_publish(amqp.Message(body, delivery_mode=2), exchange="", routing_key=QUEUE)


def _get(node: PrivateRabbitMQ) -> bytes | None:
    with kombu.Connection(node.url) as conn:
        channel = conn.default_channel
        channel.queue_declare(QUEUE, durable=True, auto_delete=False, passive=True)
        message = channel.basic_get(QUEUE, no_ack=True)
        return None if message is None else message.body


def _amqp_works(node: PrivateRabbitMQ) -> bool:
    with kombu.Connection(node.url) as conn:
        conn.connect()
        return bool(conn.connected)


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_rabbitmq_persistent_message_survives_stop_start(rabbit: PrivateRabbitMQ) -> None:
    rabbit.start()
    _publish_persistent(rabbit, b"survives a clean stop")

    rabbit.stop()
    assert not rabbit.is_running()
    assert not _port_open(rabbit.amqp_port)

    rabbit.start()
    assert _get(rabbit) == b"survives a clean stop"
    assert _get(rabbit) is None


def test_rabbitmq_kill_then_start(rabbit: PrivateRabbitMQ) -> None:
    rabbit.start()
    _publish_persistent(rabbit, b"confirmed before the crash")
    beam = rabbit.pid
    assert beam is not None
    assert "beam" in Path(f"/proc/{beam}/cmdline").read_text()

    rabbit.kill()
    assert _pid_gone(beam)
    assert not _port_open(rabbit.amqp_port)

    rabbit.start()
    assert rabbit.pid != beam
    assert _get(rabbit) == b"confirmed before the crash"
    assert rabbit.ctl("list_queues", "name", "--quiet").returncode == 0


def test_postgres_committed_row_survives_kill_9(postgres: PrivatePostgres) -> None:
    postgres.start()
    url = postgres.create_database("chaos")
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{postgres.port}/chaos"
    with psycopg.connect(postgres.conninfo("chaos")) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO t VALUES (1, 'committed')")
        assert conn.execute("SHOW fsync").fetchone() == ("on",)

    postmaster = postgres.pid
    assert postmaster is not None
    postgres.kill()
    assert _pid_gone(postmaster)
    assert not _port_open(postgres.port)

    postgres.start()
    with psycopg.connect(postgres.conninfo("chaos")) as conn:
        assert conn.execute("SELECT id, note FROM t").fetchall() == [(1, "committed")]
    assert "database system was interrupted" in postgres.log_path.read_text()


def test_two_of_each_run_beside_the_shared_servers(tmp_path: Path, pg_cache: Path) -> None:
    shared_before = {port: _port_open(port) for port in (5432, 5672, 4369)}
    rabbits = [PrivateRabbitMQ(tmp_path / f"rabbit{i}") for i in range(2)]
    pgs = [PrivatePostgres(tmp_path / f"pg{i}", pg_cache) for i in range(2)]
    try:
        for server in (*rabbits, *pgs):
            server.start()
        ports = [r.amqp_port for r in rabbits] + [p.port for p in pgs]
        assert len(set(ports)) == 4
        assert not set(ports) & {5432, 5672}
        for node in rabbits:
            assert _amqp_works(node)
            assert node.node_name in node.ctl("status").stdout
        for server in pgs:
            with psycopg.connect(server.conninfo()) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        # restarting one leaves the other alone
        pgs[0].restart()
        rabbits[0].kill()
        with psycopg.connect(pgs[1].conninfo()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert _amqp_works(rabbits[1])
    finally:
        for server in (*rabbits, *pgs):
            server.destroy()
    for server in (*rabbits, *pgs):
        assert not server.base_dir.exists()
    assert {port: _port_open(port) for port in shared_before} == shared_before
