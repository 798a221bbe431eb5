"""gunicorn's command line as the stack builds it, read back by the installed gunicorn."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
from pathlib import Path

from gunicorn.config import Config

from chatq.stack import HEADER_READ_TIMEOUT_S, Stack
from services.api.gunicorn_worker import write_problem
from shared.config import Settings


def gunicorn_reads(argv: list[str]) -> argparse.Namespace:
    assert argv[1:4] == ["-m", "gunicorn", "services.api.wsgi:app"]
    return Config().parser().parse_args(argv[4:])


def settings(data_dir: Path, **fields: object) -> Settings:
    return Settings(data_dir=data_dir, database_url="", broker_url="", **fields)  # type: ignore[arg-type]


def test_the_api_runs_on_gevent_with_a_header_deadline(tmp_path: Path) -> None:
    parsed = gunicorn_reads(Stack(settings(tmp_path)).api_argv())
    assert parsed.worker_class == "services.api.gunicorn_worker.GeventApiWorker"
    assert parsed.keepalive == HEADER_READ_TIMEOUT_S
    assert parsed.limit_request_line == 4094


def test_gthread_remains_available(tmp_path: Path) -> None:
    parsed = gunicorn_reads(Stack(settings(tmp_path, api_worker="gthread")).api_argv())
    assert parsed.worker_class == "services.api.gunicorn_worker.ThreadApiWorker"
    assert parsed.threads == 8


def test_each_stack_has_its_own_control_socket(tmp_path: Path) -> None:
    one = gunicorn_reads(Stack(settings(tmp_path / "one", api_port=8001)).api_argv())
    two = gunicorn_reads(Stack(settings(tmp_path / "two", api_port=8001)).api_argv())
    same_dir = gunicorn_reads(Stack(settings(tmp_path / "one", api_port=8002)).api_argv())
    paths = {one.control_socket, two.control_socket, same_dir.control_socket}
    assert len(paths) == 3
    assert Path(one.control_socket).parent == (tmp_path / "one").resolve()


def test_a_data_dir_too_deep_for_a_socket_path_turns_the_control_socket_off(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 120)
    parsed = gunicorn_reads(Stack(settings(deep)).api_argv())
    assert parsed.control_socket_disable is True


def test_gunicorns_own_refusal_is_written_as_problem_json() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        write_problem(ours, 414, "URI Too Long", "Request Line is too large (5000 > 4094)")
        ours.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: theirs.recv(4096), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 414 URI Too Long"
    assert "Content-Type: application/problem+json" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert json.loads(body) == {
        "type": "urn:chatq:problem:uri-too-long",
        "title": "URI too long",
        "status": 414,
        "detail": "Request Line is too large (5000 > 4094)",
    }


def test_gunicorns_master_imports_no_database_driver_before_gevent_patches() -> None:
    # psycopg picks its wait function when imported: before the patch it would block the hub
    probe = (
        "import sys; import services.api.gunicorn_worker; "
        "drivers = ('psycopg', 'sqlalchemy', 'kombu', 'flask'); "
        "print(','.join(m for m in drivers if m in sys.modules))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == ""
