"""Serving under attack, on the embedded default and on Postgres + RabbitMQ (issue 8, holes 3
and 10): many long-polls and clients trickling their headers cannot starve ``/healthz`` or a
submit; gunicorn's own refusals are problem+json; each stack has its own gunicorn control
socket; the embedded database and broker files are the owner's alone.

The stacks run the API alone (no workers): a job stays queued, so every long-poll holds its
whole wait. ``bench/serving.py`` measures the same attacks and prints the figures.
"""

from __future__ import annotations

import json
import socket
import stat
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gunicorn.ctl.client import ControlClient

from chatq.serving_probe import LongPollFlood, Slowloris
from chatq.stack import HEADER_READ_TIMEOUT_S, LIMIT_REQUEST_FIELDS, LIMIT_REQUEST_LINE
from services.api.gunicorn_config import KEEPALIVE_REQUESTS
from shared.api_keys import create_api_key
from shared.db.engine import dispose_engine
from tests.conftest import BACKENDS, NamespaceFactory, RunningStack, start_stack

pytestmark = pytest.mark.e2e

LONG_POLLS_PER_KEY = 5
LONG_POLL_KEYS = 10  # 50 waits, each key under CHATQ_MAX_OPEN_WAITS_PER_KEY
WAIT_S = 15  # outlasts the checks; a server that queues /healthz behind the waits answers later
SLOWLORIS_CONNECTIONS = 40
LIVENESS_BOUND_S = 5.0  # generous: this machine is slow, a healthy answer takes milliseconds


@pytest.fixture(scope="module", params=BACKENDS)
def running(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    server_namespace_factory: NamespaceFactory,
) -> Iterator[RunningStack]:
    tmp = tmp_path_factory.mktemp(f"serving-{request.param}")
    running = start_stack(
        request.param,
        tmp / "no-model",  # no inference workers: nothing reads it
        tmp,
        server_namespace_factory,
        inference_workers="0",
        postprocess_workers="0",
        webhook_delivery_workers="0",
        rate_limit_per_s="0",  # serving is tested here, not the rate limiter
    )
    yield running
    running.stack.stop()
    dispose_engine(running.settings.database_url)


@pytest.fixture
def client(running: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.base_url, headers=running.auth, timeout=60) as http:
        yield http


def timed(call: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()  # type: ignore[operator]
    return response, time.monotonic() - started


def test_health_and_submits_answer_while_long_polls_and_slowloris_hold_connections(
    running: RunningStack, client: httpx.Client
) -> None:
    settings = running.settings
    job_id = client.post("/v1/jobs", json={"query": "Nobody answers this."}).json()["id"]
    keys = [
        create_api_key(settings.database_url, f"poller-{i}", tenant=running.key.tenant).key
        for i in range(LONG_POLL_KEYS)
    ]
    host, port = settings.api_host, settings.api_port
    with (
        LongPollFlood(host, port, job_id, keys, LONG_POLLS_PER_KEY, WAIT_S) as flood,
        Slowloris(host, port, SLOWLORIS_CONNECTIONS) as slowloris,
    ):
        for _ in range(3):
            health, took = timed(lambda: client.get("/healthz", timeout=30))
            assert health.status_code == 200
            assert took < LIVENESS_BOUND_S, f"/healthz took {took:.1f} s"
        submit, took = timed(lambda: client.post("/v1/jobs", json={"query": "Hi"}, timeout=30))
        assert submit.status_code == 202, submit.text
        assert took < LIVENESS_BOUND_S, f"a submit took {took:.1f} s"
        # the attacks were real: every long-poll still holds its wait...
        assert flood.still_waiting() == LONG_POLLS_PER_KEY * LONG_POLL_KEYS
        # ...and a connection that never finishes its headers is cut, not waited for
        assert slowloris.first_cut.wait(HEADER_READ_TIMEOUT_S * 3)


def raw_request(running: RunningStack, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection((running.settings.api_host, running.settings.api_port)) as conn:
        conn.settimeout(30)
        conn.sendall(request)
        answer = b"".join(iter(lambda: conn.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    return int(status_line.split()[1]), headers, body


def read_response(stream: Any) -> tuple[int, dict[str, str]]:
    """One response from a keep-alive connection's stream: its status and headers (the body,
    of ``Content-Length`` bytes, is read and dropped)."""
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline().decode("latin-1").strip()) != "":
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    stream.read(int(headers["content-length"]))
    return status, headers


def test_a_keep_alive_connection_is_closed_after_its_share_of_requests(
    running: RunningStack,
) -> None:
    """So that its client reconnects, and the API process less busy takes it: connections
    opened at once would otherwise stay with whichever process accepted them."""
    address = (running.settings.api_host, running.settings.api_port)
    with socket.create_connection(address) as conn, conn.makefile("rb") as stream:
        conn.settimeout(30)
        closes = []
        for _ in range(KEEPALIVE_REQUESTS):
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers = read_response(stream)
            assert status == 200
            closes.append(headers.get("connection", "").lower() == "close")
        assert closes == [False] * (KEEPALIVE_REQUESTS - 1) + [True]
        assert stream.read() == b""  # and the server did close it


@pytest.mark.parametrize(
    ("request_bytes", "status", "slug"),
    [
        (
            b"GET /v1/jobs/" + b"a" * (LIMIT_REQUEST_LINE + 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            "uri-too-long",
        ),
        (
            b"GET /healthz HTTP/1.1\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(LIMIT_REQUEST_FIELDS + 5))
            + b"\r\n",
            431,
            "request-header-fields-too-large",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n",
            431,
            "request-header-fields-too-large",
        ),
        (b"NONSENSE\r\n\r\n", 400, "bad-request"),
    ],
    ids=["414", "431-count", "431-size", "400"],
)
def test_gunicorns_own_refusals_are_problem_json(
    running: RunningStack, request_bytes: bytes, status: int, slug: str
) -> None:
    got, headers, body = raw_request(running, request_bytes)
    assert got == status
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["type"] == f"urn:chatq:problem:{slug}"
    assert problem["title"] and problem["detail"]


def test_the_stack_has_a_control_socket_of_its_own(running: RunningStack) -> None:
    settings = running.settings
    path = settings.data_dir / f"gunicorn-{settings.api_port}.ctl"
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with ControlClient(str(path), timeout=10) as control:
        listeners = control.send_command("show listeners")["listeners"]
    assert [entry["address"] for entry in listeners] == [
        f"http://{settings.api_host}:{settings.api_port}"
    ]


def test_the_data_dir_is_the_owners_alone(running: RunningStack) -> None:
    data_dir = running.settings.data_dir
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    sqlite_files = {
        p.name: stat.S_IMODE(p.stat().st_mode) for p in data_dir.iterdir() if ".db" in p.name
    }
    if running.backend == "embedded":
        assert {"chatq.db", "chatq.db-wal", "broker.db", "broker.db-wal"} <= set(sqlite_files)
        assert set(sqlite_files.values()) == {0o600}
    else:
        assert sqlite_files == {}
