"""The whole stack as child processes: gunicorn (API), inference workers, Celery post-processors.

``chatq up`` and ``chatq demo`` use it. Children inherit the environment, so they read the same
settings; command-line flags are turned into ``CHATQ_*`` variables before they start. While
``chatq up`` runs, a child that dies is started again (``chatq.supervisor``); one that dies at
start-up, or keeps dying, stops the stack.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from chatq.supervisor import CrashLoopError, Supervisor
from shared.config import ApiWorker, Settings
from shared.db.migrate import upgrade_database
from shared.logs import get_logger
from shared.messaging.broker import broker_connection
from shared.messaging.topology import POSTPROCESS_QUEUE_NAME, WEBHOOK_QUEUE_NAME, declare_topology
from shared.model_layout import ModelLayout

log = get_logger(__name__)

PR_SET_PDEATHSIG = 1

LIMIT_REQUEST_LINE = 4094
LIMIT_REQUEST_FIELDS = 100
LIMIT_REQUEST_FIELD_SIZE = 8190
API_CONNECTIONS_PER_PROCESS = 1000
HEADER_READ_TIMEOUT_S = 5
GRACE_MARGIN_S = 10  # beyond the longest long-poll, for the answer to be written
UNIX_SOCKET_PATH_MAX = 108  # sun_path, terminating NUL included


def _die_with_parent() -> None:
    # Children must not outlive a stack that was killed outright (kill -9, a crashed test).
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # beside the stack's environment


class StackError(RuntimeError):
    pass


class Stack:
    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.env = {**os.environ, **(env or {})}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._specs: dict[str, ProcessSpec] = {}

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def specs(self) -> list[ProcessSpec]:
        s = self.settings
        python = sys.executable
        specs = [ProcessSpec("api", self.api_argv())]
        specs += [
            ProcessSpec(f"worker-{i}", [python, "-m", "services.worker"])
            for i in range(s.inference_workers)
        ]
        specs += [
            ProcessSpec(
                f"postprocess-{i}",
                self.celery_argv(
                    f"postprocess-{i}", POSTPROCESS_QUEUE_NAME, s.postprocess_concurrency
                ),
            )
            for i in range(s.postprocess_workers)
        ]  # fmt: skip
        # Webhook deliveries get processes of their own: a receiver that answers slowly holds a
        # delivery thread (up to CHATQ_WEBHOOK_TIMEOUT_S), never one that stores results.
        # Prefetch 1: a delivery waiting behind a slow one should go to a free worker instead.
        specs += [
            ProcessSpec(
                f"delivery-{i}",
                self.celery_argv(
                    f"delivery-{i}", WEBHOOK_QUEUE_NAME, s.webhook_delivery_concurrency,
                    "--prefetch-multiplier", "1",
                ),
            )
            for i in range(s.webhook_delivery_workers)
        ]  # fmt: skip
        if s.metrics_port:
            # each child serves its metrics on a port of its own (the API on its own port)
            for offset, spec in enumerate(specs[1:]):
                spec.env["CHATQ_METRICS_PORT"] = str(s.metrics_port + offset)
        return specs

    def celery_argv(self, name: str, queue: str, concurrency: int, *extra: str) -> list[str]:
        """A post-processing Celery worker consuming ``queue`` on a pool of threads."""
        s = self.settings
        return [
            # root in containers is the operator's choice, not news at every start
            sys.executable, "-W", "ignore:::celery.platforms",
            "-m", "celery", "--quiet", "-A", "services.postprocess.celery_app", "worker",
            "--pool", "threads",
            "--concurrency", str(concurrency),
            "--queues", queue,
            "--hostname", f"{name}-{s.api_port}@%h",
            "--without-gossip", "--without-mingle",
            # heartbeats are events: on a broker with fanout exchanges (not the embedded one)
            *(["--without-heartbeat"] if s.uses_embedded_broker else []),
            "--loglevel", s.log_level.upper(),
            *extra,
        ]  # fmt: skip

    def api_argv(self) -> list[str]:
        """gunicorn's command line (``chatq api`` runs it too)."""
        s = self.settings
        argv = [
            sys.executable, "-m", "gunicorn", "services.api.wsgi:app",
            "--config", "python:services.api.gunicorn_config",
            "--bind", f"{s.api_host}:{s.api_port}",
            "--workers", str(s.api_processes),
            # a stopping API lets its long-polls run out, not cut them
            "--graceful-timeout", str(math.ceil(s.max_long_poll_s) + GRACE_MARGIN_S),
            "--log-level", s.log_level.lower(),
            # gunicorn's defaults, written out: longer lines and headers are refused (414, 431)
            "--limit-request-line", str(LIMIT_REQUEST_LINE),
            "--limit-request-fields", str(LIMIT_REQUEST_FIELDS),
            "--limit-request-field_size", str(LIMIT_REQUEST_FIELD_SIZE),
            *self._control_socket_args(),
        ]  # fmt: skip
        if s.api_worker is ApiWorker.GEVENT:
            argv += [
                "--worker-class", "services.api.gunicorn_worker.GeventApiWorker",
                "--worker-connections", str(API_CONNECTIONS_PER_PROCESS),
                # gevent's worker gives a request line and its headers this long in all, then
                # closes the connection: a client trickling its headers is cut, not waited for
                "--keep-alive", str(HEADER_READ_TIMEOUT_S),
            ]  # fmt: skip
        else:
            argv += [
                "--worker-class", "services.api.gunicorn_worker.ThreadApiWorker",
                "--threads", str(s.api_threads),
            ]  # fmt: skip
        return argv

    def _control_socket_args(self) -> list[str]:
        # gunicorn >= 25.1 listens on a control socket at one path per user
        # ($XDG_RUNTIME_DIR/gunicorn.ctl): every stack on the host would share it, a new stack
        # taking it over from the last and a stopping one removing it under the others. Each
        # stack gets its own beside its data, or none where that path is too long for a socket.
        path = self.settings.data_dir / f"gunicorn-{self.settings.api_port}.ctl"
        if len(os.fsencode(path)) < UNIX_SOCKET_PATH_MAX:
            return ["--control-socket", str(path)]
        return ["--no-control-socket"]

    def prepare(self) -> None:
        """Everything the processes need before they start: schema, queues, a built model."""
        if self.settings.inference_workers:
            ModelLayout(self.settings.model_dir).require_manifest()
        # webhook secrets and transcripts live here on SQLite: the owner's alone
        self.settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        upgrade_database(self.settings.database_url)
        with broker_connection(self.settings) as connection:
            connection.ensure_connection(max_retries=3)
            declare_topology(connection)

    def start(self) -> None:
        self.prepare()
        self._specs = {spec.name: spec for spec in self.specs()}
        for spec in self._specs.values():
            self.spawn(spec)

    def restart(self, name: str) -> subprocess.Popen[bytes]:
        """Start the child ``name`` again, as it was first started."""
        return self.spawn(self._specs[name])

    def spawn(self, spec: ProcessSpec, name: str | None = None) -> subprocess.Popen[bytes]:
        """Start one process of the stack (``name`` defaults to the spec's)."""
        name = name or spec.name
        process = subprocess.Popen(
            spec.argv,
            env={**self.env, **spec.env},
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.processes[name] = process
        log.info("process_started", process=name, pid=process.pid)
        return process

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until the API answers /readyz (or a child dies, or ``timeout_s`` passes)."""
        give_up_at = time.monotonic() + timeout_s
        while time.monotonic() < give_up_at:
            self.check_alive()
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise StackError(f"the API was not ready at {self.base_url} within {timeout_s:g} s")

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None:
                raise StackError(f"{name} exited with status {code}; its log is above")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM everything (each finishes what it holds), then SIGKILL what is left."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        give_up_at = time.monotonic() + timeout_s
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.1, give_up_at - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("process_killed", process=name)
                process.kill()
                process.wait()
        self.processes.clear()

    def run_until_signal(self) -> int:
        """Serve until SIGINT/SIGTERM (exit 0), restarting children that die, or until one
        keeps dying (exit 1)."""
        stopping = False

        def request_stop(_signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        supervisor = Supervisor(self.processes, self.restart)
        try:
            while not stopping:
                supervisor.poll()
                time.sleep(0.2)
        except CrashLoopError as error:
            log.error("stack_failed", error=str(error))
            print(f"chatq up: {error}", file=sys.stderr, flush=True)
            return 1
        finally:
            log.info("stack_stopping")
            self.stop()
        return 0
