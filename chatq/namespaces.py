"""A fresh Postgres database and RabbitMQ virtual host (dropped after), for test and benchmark
runs: they never touch anyone's data, start from empty queues and never collide.

The servers are found through ``CHATQ_TEST_POSTGRES_URL`` and ``CHATQ_TEST_RABBITMQ_URL``
(defaults: the local services on their standard ports, trust auth, guest/guest). Virtual hosts
are made through RabbitMQ's management API (``CHATQ_TEST_RABBITMQ_MANAGEMENT_URL``, default
port 15672: `.ci/run` enables the plugin) in about 20 ms; without the plugin, with
``rabbitmqctl`` on this machine, which starts an Erlang VM per call (0.5-1 s, three calls per
namespace: minutes over a test run).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from urllib.parse import unquote, urlsplit

import httpx
import psycopg
from sqlalchemy.engine import make_url

# Test tooling, not service configuration: these never reach shared/config.py's settings.
POSTGRES_URL = os.environ.get(
    "CHATQ_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
RABBITMQ_URL = os.environ.get("CHATQ_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
RABBITMQ_MANAGEMENT_URL = os.environ.get(
    "CHATQ_TEST_RABBITMQ_MANAGEMENT_URL",
    f"http://{urlsplit(RABBITMQ_URL).hostname or '127.0.0.1'}:15672",
)


@dataclass(frozen=True)
class Namespace:
    database_url: str
    broker_url: str


def _admin() -> psycopg.Connection:
    url = make_url(POSTGRES_URL)
    return psycopg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password,
        dbname=url.database, autocommit=True,
    )  # fmt: skip


class ServersUnavailableError(RuntimeError):
    pass


def _add_vhost(vhost: str) -> None:
    user = unquote(urlsplit(RABBITMQ_URL).username or "guest")
    management = _management_api()
    if management is None:
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        return
    try:
        management.put(f"/api/vhosts/{vhost}").raise_for_status()
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        management.put(f"/api/permissions/{vhost}/{user}", json=everything).raise_for_status()
    except httpx.HTTPError as error:
        management.delete(f"/api/vhosts/{vhost}")  # no half-made virtual host left behind
        raise ServersUnavailableError(
            f"RabbitMQ's management API could not make virtual host {vhost} ({error})"
        ) from None
    finally:
        management.close()


def _delete_vhost(vhost: str) -> None:
    management = _management_api()
    if management is None:
        _rabbitmqctl("delete_vhost", vhost)
        return
    try:
        response = management.delete(f"/api/vhosts/{vhost}")
        if response.status_code != 404:  # gone already is what was asked
            response.raise_for_status()
    except httpx.HTTPError as error:
        raise ServersUnavailableError(
            f"RabbitMQ's management API could not delete virtual host {vhost} ({error})"
        ) from None
    finally:
        management.close()


@cache
def _management_api_enabled() -> bool:
    """Asked once per process: is RabbitMQ's management API there for these credentials?"""
    try:
        with _management_client() as client:
            client.get("/api/whoami").raise_for_status()
    except httpx.HTTPError:
        return False
    return True


def _management_api() -> httpx.Client | None:
    """A client of RabbitMQ's management API, or ``None`` where the plugin is not enabled."""
    return _management_client() if _management_api_enabled() else None


def _management_client() -> httpx.Client:
    parts = urlsplit(RABBITMQ_URL)
    credentials = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
    return httpx.Client(base_url=RABBITMQ_MANAGEMENT_URL, auth=credentials, timeout=30)


def _rabbitmqctl(*args: str) -> None:
    completed = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True)
    if completed.returncode != 0:
        raise ServersUnavailableError(
            f"rabbitmqctl {' '.join(args)} failed ({completed.stderr.strip()}); is RabbitMQ up?"
        )


def create_namespace(prefix: str) -> Namespace:
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with _admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        raise ServersUnavailableError(
            f"PostgreSQL at {POSTGRES_URL} is unreachable ({error}); start it first"
        ) from None
    vhost = name.replace("_", "-")
    _add_vhost(vhost)
    return Namespace(
        make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False),
        RABBITMQ_URL.rstrip("/") + "/" + vhost,
    )


def drop_namespace(namespace: Namespace) -> None:
    name = make_url(namespace.database_url).database
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _delete_vhost(urlsplit(namespace.broker_url).path.lstrip("/"))


@contextmanager
def server_namespace(prefix: str = "chatq_bench") -> Iterator[Namespace]:
    namespace = create_namespace(prefix)
    try:
        yield namespace
    finally:
        drop_namespace(namespace)
