"""Chaos fixtures: one private RabbitMQ and one private Postgres for the module (each test gets
its own database and virtual host on them), free to be stopped, killed and restarted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.harness import REPORTS
from tests.chaos.servers import PrivatePostgres, PrivateRabbitMQ
from tests.conftest import TEST_CACHE


@pytest.fixture(scope="session")
def private_rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbitMQ]:
    with PrivateRabbitMQ(tmp_path_factory.mktemp("chaos-rabbitmq")) as server:
        yield server


@pytest.fixture(scope="session")
def private_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(
        tmp_path_factory.mktemp("chaos-postgres"), cache_dir=TEST_CACHE.parent / "postgres"
    )
    with server:
        yield server


@pytest.fixture
def servers_up(
    private_rabbitmq: PrivateRabbitMQ, private_postgres: PrivatePostgres
) -> tuple[PrivateRabbitMQ, PrivatePostgres]:
    """Both servers running (a previous test may have left one stopped)."""
    for server in (private_rabbitmq, private_postgres):
        if not server.is_running():
            server.start()
    return private_rabbitmq, private_postgres


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS:
        terminalreporter.section("chaos: jobs submitted, completed, lost, duplicated")
        for report in REPORTS:
            terminalreporter.write_line(report.line())
