"""Private RabbitMQ and PostgreSQL servers that chaos tests may stop, kill and restart at will.

The shared servers (RabbitMQ on 5672, PostgreSQL on 5432) belong to every other test and must
never be disturbed, so each instance here gets its own ports, data, logs and (for RabbitMQ)
its own epmd and Erlang cookie, all under one ``base_dir``. Only the installed binaries are used.

Ports are picked below the kernel's ephemeral range: a stopped server's port could otherwise be
taken by some client's outgoing connection and the restart would fail with "address in use".
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

__all__ = [
    "PrivatePostgres",
    "PrivateRabbitMQ",
    "ServerError",
    "ServerStartError",
    "free_port",
]


class ServerError(RuntimeError):
    """A private server did not do what was asked of it."""


class ServerStartError(ServerError):
    """A private server failed to start; the message ends with the tail of its logs."""


# --- small helpers -----------------------------------------------------------------------------

_LOOPBACK = "127.0.0.1"
# Ports other tooling on a developer machine or CI runner is likely to want.
_AVOID_PORTS = frozenset({4369, 5432, 5433, 5672, 5671, 15672, 15692, 25672, 35672, 61613})
_allocated_ports: set[int] = set()
_rng = random.SystemRandom()  # immune to tests seeding `random` (xdist workers would collide)


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((_LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1, below the ephemeral range, not handed out before."""
    low, high = 20000, min(_ephemeral_low(), 65536) - 1
    for _ in range(500):
        port = _rng.randint(low, high) if high > low else 0
        if port in _allocated_ports or port in _AVOID_PORTS:
            continue
        if port == 0:  # odd kernel configuration: let the kernel choose
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((_LOOPBACK, 0))
                port = sock.getsockname()[1]
        if _can_bind(port):
            _allocated_ports.add(port)
            return port
    raise ServerError("no free TCP port found on 127.0.0.1")


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((_LOOPBACK, port)) == 0


def _wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def _tail(paths: list[Path], lines: int = 40) -> str:
    parts = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        tail = "\n".join(text.rstrip().splitlines()[-lines:])
        parts.append(f"--- last {lines} lines of {path} ---\n{tail}")
    return "\n".join(parts) if parts else "(no log written)"


def _live_group_members(pgid: int) -> list[int]:
    """Processes of a process group that are not zombies (Linux /proc; [] elsewhere).

    Orphans of a killed server are reparented to PID 1, which may reap them late; a zombie holds
    no ports or shared memory, so it does not count.
    """
    members = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                raw = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = raw[raw.rfind(")") + 2 :].split()
            if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def _minimal_env(**extra: str) -> dict[str, str]:
    """A clean environment: the caller's ERL_*, RABBITMQ_*, PG* variables must not leak in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    env.update(extra)
    return env


class _Managed:
    """What both servers share: context-manager use (start on enter, destroy on exit) and a
    safety net that kills, at interpreter exit, whatever was started and never destroyed."""

    base_dir: Path

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def destroy(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _kill_all(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()


_started: set[_Managed] = set()  # strong refs: a forgotten instance must still be cleaned up


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_started):
        with contextlib.suppress(Exception):
            server._kill_all()
    _started.clear()


# --- RabbitMQ ----------------------------------------------------------------------------------


def _find_rabbitmq_home() -> Path:
    """The versioned RABBITMQ_HOME (the folder holding sbin/, plugins/, escript/)."""
    candidates = []
    for name in ("rabbitmq-server", "rabbitmqctl"):
        for where in (Path("/usr/lib/rabbitmq/bin") / name, shutil.which(name)):
            if where:
                candidates.append(Path(where).resolve().parent.parent)
    candidates += sorted(Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*"), reverse=True)
    for home in candidates:
        if (home / "sbin" / "rabbitmq-env").is_file() and (home / "plugins").is_dir():
            return home
    raise ServerError("RabbitMQ is not installed (no RABBITMQ_HOME with sbin/ and plugins/)")


def _rabbit_app_dirs(plugins: Path) -> list[Path]:
    """The `rabbit` application and everything it depends on, among the bundled plugins dir.

    Booting with only these instead of all ~70 bundled apps saves about a second: RabbitMQ
    scans every loaded application for feature flags and upgrade steps, and cuttlefish loads
    every schema it finds.
    """
    apps: dict[str, Path] = {}
    for entry in plugins.iterdir():
        match = re.fullmatch(r"(\w+)-[\w.+-]+", entry.name)
        if match and entry.is_dir() and (entry / "ebin" / f"{match.group(1)}.app").is_file():
            apps[match.group(1)] = entry
    if "rabbit" not in apps:
        return sorted(p for p in plugins.iterdir() if p.name != "README")
    needed: set[str] = set()
    todo = ["rabbit"]
    while todo:
        name = todo.pop()
        if name in needed or name not in apps:
            continue  # not bundled: an OTP application found through the Erlang root
        needed.add(name)
        text = (apps[name] / "ebin" / f"{name}.app").read_text(errors="replace")
        for key in ("applications", "included_applications"):
            found = re.search(r"\{\s*" + key + r"\s*,\s*\[([^\]]*)\]", text)
            if found:
                todo += [dep.strip() for dep in found.group(1).split(",") if dep.strip()]
    return sorted(apps[name] for name in needed)


_START_MARKER = "=== chatq private node start"


class PrivateRabbitMQ(_Managed):
    """A throwaway RabbitMQ node under ``base_dir``, safe to stop, kill and restart.

    It has its own node name, AMQP port, distribution port, epmd (on its own port, so the shared
    node's epmd on 4369 is not involved) and Erlang cookie (``HOME=base_dir/home``), and uses a
    trimmed RABBITMQ_HOME made of symlinks to the installed apps. ``/etc/rabbitmq`` is not read.
    Durable queues and persistent messages survive ``stop()``/``start()`` (same node name and
    mnesia dir). ``destroy()`` deletes ``base_dir`` itself.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        node_name: str | None = None,
        rabbitmq_home: Path | None = None,
    ) -> None:
        self.base_dir = Path(base_dir).absolute()
        self.node_name = node_name or f"chatq-chaos-{secrets.token_hex(4)}@localhost"
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.last_start_s: float | None = None
        self.last_stop_s: float | None = None
        self._source_home = rabbitmq_home or _find_rabbitmq_home()
        self._home = self.base_dir / "home"
        self._etc = self.base_dir / "etc"
        self._rabbit_home = self.base_dir / "rabbitmq"
        self._mnesia = self.base_dir / "mnesia"
        self._logs = self.base_dir / "log"
        self._out = self._logs / "server.out"
        self._proc: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None

    # public API --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{_LOOPBACK}:{self.amqp_port}/"

    @property
    def log_file(self) -> Path:
        return self._logs / f"{self.node_name}.log"

    @property
    def pid(self) -> int | None:
        """PID of the beam.smp process (``rabbitmq-server`` execs into it), while running."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 120) -> None:
        """Boot the node; returns once guest/guest can open an AMQP connection."""
        if self.is_running():
            return
        began = time.monotonic()
        _started.add(self)
        self._prepare()
        self._start_epmd()
        for port in (self.amqp_port, self.dist_port):
            if _port_open(port):
                raise ServerStartError(f"port {port} of {self.node_name} is used by someone else")
        with self._out.open("ab") as out:
            out.write(f"\n{_START_MARKER} {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                [str(self._rabbit_home / "sbin" / "rabbitmq-server")],
                cwd=self.base_dir,
                env=self._server_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = began + timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise ServerStartError(
                    f"RabbitMQ node {self.node_name} exited with code {code} while starting\n"
                    + self._log_tail()
                )
            if self._amqp_ready():
                break
            if time.monotonic() >= deadline:
                self.kill()
                raise ServerStartError(
                    f"RabbitMQ node {self.node_name} did not accept AMQP on port "
                    f"{self.amqp_port} within {timeout_s:.0f}s\n" + self._log_tail()
                )
            time.sleep(0.1)
        self.last_start_s = time.monotonic() - began

    def stop(self, timeout_s: float = 60) -> None:
        """Clean shutdown (SIGTERM, which RabbitMQ handles like ``rabbitmqctl stop``)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._proc = None
            return
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServerError(
                f"RabbitMQ node {self.node_name} did not stop within {timeout_s:.0f}s; killed it\n"
                + self._log_tail()
            ) from None
        self._proc = None
        self._wait_ports_closed()
        self.last_stop_s = time.monotonic() - began

    def restart(self, timeout_s: float = 120) -> None:
        self.stop()
        self.start(timeout_s)

    def kill(self) -> None:
        """Abrupt death: SIGKILL to the beam process, as in a crash or an OOM kill."""
        proc = self._proc
        self._proc = None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait()
        self._wait_ports_closed()

    def destroy(self) -> None:
        """Stop the node (kill it if it will not stop), stop its epmd, delete ``base_dir``."""
        try:
            self.stop()
        except ServerError:
            self.kill()
        self._stop_epmd()
        shutil.rmtree(self.base_dir, ignore_errors=True)
        _started.discard(self)

    def ctl(
        self, *args: str, timeout_s: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n <node> ARGS`` against this node (its cookie, its epmd)."""
        completed = subprocess.run(
            [str(self._source_home / "sbin" / "rabbitmqctl"), "-n", self.node_name, *args],
            cwd=self.base_dir,
            env=self._ctl_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if check and completed.returncode != 0:
            raise ServerError(
                f"rabbitmqctl {' '.join(args)} failed ({completed.returncode}): "
                f"{completed.stderr.strip() or completed.stdout.strip()}"
            )
        return completed

    # internals ---------------------------------------------------------------------------------

    def _kill_all(self) -> None:
        self.kill()
        self._stop_epmd()

    def _stop_epmd(self) -> None:
        epmd, self._epmd = self._epmd, None
        if epmd is not None and epmd.poll() is None:
            epmd.terminate()
            try:
                epmd.wait(10)
            except subprocess.TimeoutExpired:
                epmd.kill()
                epmd.wait()

    def _prepare(self) -> None:
        if (self._etc / "rabbitmq.conf").is_file():
            return
        for folder in (self._home, self._etc, self._mnesia, self._logs):
            folder.mkdir(parents=True, exist_ok=True)
        cookie = self._home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text("".join(_rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ", k=20)))
            cookie.chmod(0o400)  # Erlang refuses a cookie others can read
        # An empty env file: the shared /etc/rabbitmq/rabbitmq-env.conf sets NODENAME and more.
        (self._etc / "rabbitmq-env.conf").write_text("")
        (self._etc / "enabled_plugins").write_text("[].\n")
        # Trimmed RABBITMQ_HOME: copies of the start scripts (rabbitmq-env derives RABBITMQ_HOME,
        # hence ERL_LIBS, from where the script really lives) plus symlinks to the needed apps.
        if self._rabbit_home.exists():
            shutil.rmtree(self._rabbit_home)
        (self._rabbit_home / "sbin").mkdir(parents=True)
        (self._rabbit_home / "plugins").mkdir()
        for script in ("rabbitmq-server", "rabbitmq-env", "rabbitmq-defaults"):
            shutil.copy2(self._source_home / "sbin" / script, self._rabbit_home / "sbin" / script)
        (self._rabbit_home / "escript").symlink_to(self._source_home / "escript")
        for app in _rabbit_app_dirs(self._source_home / "plugins"):
            (self._rabbit_home / "plugins" / app.name).symlink_to(app)
        # Written last: its presence marks a prepared base_dir.
        (self._etc / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = {_LOOPBACK}:{self.amqp_port}\n"
            "loopback_users.guest = true\n"
            "log.console = false\n"
            "log.file.level = info\n"
        )

    def _common_env(self) -> dict[str, str]:
        return _minimal_env(
            HOME=str(self._home),
            RABBITMQ_CONF_ENV_FILE=str(self._etc / "rabbitmq-env.conf"),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS=_LOOPBACK,
        )

    def _server_env(self) -> dict[str, str]:
        return self._common_env() | {
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_NODE_IP_ADDRESS": _LOOPBACK,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self._etc / "rabbitmq.conf"),
            "RABBITMQ_CONFIG_FILES": str(self._etc / "conf.d" / "*.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self._etc / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self._etc / "enabled_plugins"),
            "RABBITMQ_PLUGINS_DIR": str(self._rabbit_home / "plugins"),
            "RABBITMQ_MOTD_FILE": str(self._etc / "motd"),
            "RABBITMQ_MNESIA_BASE": str(self._mnesia),
            "RABBITMQ_LOG_BASE": str(self._logs),
            "RABBITMQ_PID_FILE": str(self.base_dir / "rabbitmq.pid"),
            "ERL_CRASH_DUMP": str(self._logs / "erl_crash.dump"),
            # With ALLOW_INPUT the script execs the VM instead of staying around as a signal
            # proxy, so our child *is* beam.smp (SIGKILL hits the broker itself); -noinput keeps
            # the Erlang shell off anyway.
            "RABBITMQ_ALLOW_INPUT": "1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                "-noinput -kernel inet_dist_use_interface {127,0,0,1}"
            ),
        }

    def _ctl_env(self) -> dict[str, str]:
        # Port 0: the CLI's own distribution listener takes any free port (default 35672-35682
        # is shared with every other rabbitmqctl on the machine).
        return self._common_env() | {
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_CTL_DIST_PORT_MIN": "0",
            "RABBITMQ_CTL_DIST_PORT_MAX": "0",
        }

    def _start_epmd(self) -> None:
        """Our own epmd, as our child (not a daemon), so destroy() can stop it."""
        if self._epmd is not None and self._epmd.poll() is None:
            return
        epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        if _port_open(self.epmd_port):
            raise ServerStartError(f"epmd port {self.epmd_port} is used by someone else")
        self._logs.mkdir(parents=True, exist_ok=True)
        with (self._logs / "epmd.out").open("ab") as out:
            self._epmd = subprocess.Popen(
                [epmd, "-port", str(self.epmd_port), "-address", _LOOPBACK],
                cwd=self.base_dir,
                env=_minimal_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not _wait_until(lambda: _port_open(self.epmd_port), 10):
            raise ServerStartError(
                f"epmd did not listen on {self.epmd_port}\n" + _tail([self._logs / "epmd.out"])
            )

    def _amqp_ready(self) -> bool:
        import amqp  # kombu's transport; imported lazily so the module loads without it

        if not _port_open(self.amqp_port):
            return False
        conn = amqp.Connection(
            host=f"{_LOOPBACK}:{self.amqp_port}",
            userid="guest",
            password="guest",
            connect_timeout=2,
            read_timeout=5,
            write_timeout=5,
        )
        try:
            conn.connect()
        except amqp.exceptions.AccessRefused as exc:
            raise ServerStartError(
                f"RabbitMQ node {self.node_name} refused guest/guest: {exc}\n" + self._log_tail()
            ) from exc
        except (OSError, amqp.exceptions.AMQPError):
            conn.collect()
            return False
        conn.close()
        return True

    def _wait_ports_closed(self) -> None:
        if not _wait_until(lambda: not _port_open(self.amqp_port), 10):
            raise ServerError(f"port {self.amqp_port} still open after {self.node_name} ended")

    def _log_tail(self) -> str:
        """The first errors of the latest boot (the cause; RabbitMQ then prints a long crash
        report) and the tails of the console output and of the node's log file."""
        try:
            console = self._out.read_text(errors="replace")
        except OSError:
            console = ""
        latest = console[console.rfind(_START_MARKER) :] if _START_MARKER in console else console
        errors = [line for line in latest.splitlines() if "[error]" in line or "[critical]" in line]
        head = ""
        if errors:
            head = "--- first errors of this boot ---\n" + "\n".join(errors[:15]) + "\n"
        return head + _tail([self._out, self.log_file], lines=25)


# --- PostgreSQL --------------------------------------------------------------------------------

StopMode = Literal["smart", "fast", "immediate"]
_STOP_SIGNALS: dict[str, signal.Signals] = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}
_UNIX_SOCKET_PATH_MAX = 107  # sizeof(sun_path) - 1 on Linux


def _find_pg_bin_dir() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "postgres").is_file() and (candidate / "initdb").is_file():
            return candidate
    found = shutil.which("initdb") or shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise ServerError("PostgreSQL server binaries not found (initdb, postgres)")


def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class PrivatePostgres(_Managed):
    """A throwaway PostgreSQL cluster under ``base_dir``, safe to stop, kill -9 and restart.

    Trust auth, 127.0.0.1 only, its own port and unix-socket dir, fsync on (a real, durable
    server; only shared_buffers is small). PostgreSQL refuses to run as root, so when we are
    root every server process runs as ``os_user`` and ``base_dir`` is given to that user; the
    folders above ``base_dir`` get the search (x) bit for others where that user lacks it (e.g.
    pytest's ``/tmp/pytest-of-root`` is 0700). With ``cache_dir`` the initdb result is made
    once and copied: a first start takes ~0.4s instead of ~1s. ``destroy()`` deletes ``base_dir``.
    """

    def __init__(
        self,
        base_dir: Path,
        cache_dir: Path | None = None,
        *,
        bin_dir: Path | None = None,
        os_user: str = "postgres",
        shared_buffers: str = "16MB",
        max_connections: int = 100,
    ) -> None:
        self.base_dir = Path(base_dir).absolute()
        self.cache_dir = Path(cache_dir).absolute() if cache_dir is not None else None
        self.bin_dir = bin_dir or _find_pg_bin_dir()
        self.port = free_port()
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "run"
        self.log_path = self.base_dir / "postgres.log"
        self.shared_buffers = shared_buffers
        self.max_connections = max_connections
        self.last_start_s: float | None = None
        self.last_stop_s: float | None = None
        self._user = pwd.getpwnam(os_user) if os.geteuid() == 0 else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pgid: int | None = None

    # public API --------------------------------------------------------------------------------

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL of a database on this server."""
        return f"postgresql+psycopg://postgres@{_LOOPBACK}:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq URL (for psycopg.connect) of a database on this server."""
        return f"postgresql://postgres@{_LOOPBACK}:{self.port}/{dbname}"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    @property
    def pid(self) -> int | None:
        """PID of the postmaster, while running."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 60) -> None:
        """Start (running crash recovery if needed); returns once it accepts connections."""
        if self.is_running():
            return
        began = time.monotonic()
        _started.add(self)
        self._prepare()
        self._wait_old_processes_gone()
        if _port_open(self.port):
            raise ServerStartError(f"port {self.port} is used by someone else")
        pid_file = self.data_dir / "postmaster.pid"
        with self.log_path.open("ab") as log:
            self._proc = self._popen_as_server_user(
                [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._pgid = self._proc.pid  # session leader: its children share its process group
        deadline = began + timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise ServerStartError(
                    f"PostgreSQL on port {self.port} exited with code {code} while starting\n"
                    + _tail([self.log_path])
                )
            if self._pid_file_says_ready(pid_file) and self._accepts_connections():
                break
            if time.monotonic() >= deadline:
                self.kill()
                raise ServerStartError(
                    f"PostgreSQL on port {self.port} not ready within {timeout_s:.0f}s\n"
                    + _tail([self.log_path])
                )
            time.sleep(0.05)
        self.last_start_s = time.monotonic() - began

    def stop(self, mode: StopMode = "fast", timeout_s: float = 60) -> None:
        """Shut down like ``pg_ctl stop -m MODE`` (smart: SIGTERM, fast: SIGINT, immediate:
        SIGQUIT); returns when every server process has exited."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._proc = None
            return
        began = time.monotonic()
        proc.send_signal(_STOP_SIGNALS[mode])
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServerError(
                f"PostgreSQL on port {self.port} did not stop ({mode}) within {timeout_s:.0f}s; "
                "killed it\n" + _tail([self.log_path])
            ) from None
        self._proc = None
        self._wait_old_processes_gone()
        self.last_stop_s = time.monotonic() - began

    def restart(self, mode: StopMode = "fast", timeout_s: float = 60) -> None:
        self.stop(mode)
        self.start(timeout_s)

    def kill(self) -> None:
        """SIGKILL the postmaster and all its children at once (a crash); ``start()`` then runs
        crash recovery. Children are killed too because orphaned backends would keep the old
        shared memory attached and block the restart."""
        proc = self._proc
        self._proc = None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self._wait_old_processes_gone()

    def destroy(self) -> None:
        """Stop the server (kill it if it will not stop) and delete ``base_dir``."""
        try:
            self.stop("fast")
        except ServerError:
            self.kill()
        self._wait_old_processes_gone()
        shutil.rmtree(self.base_dir, ignore_errors=True)
        _started.discard(self)

    def create_database(self, name: str) -> str:
        """Create a database; returns its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    # internals ---------------------------------------------------------------------------------

    def _kill_all(self) -> None:
        self.kill()

    def _popen_as_server_user(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Popen as the server user (when we are root), with a clean environment."""
        user = self._user
        return subprocess.Popen(
            args,
            cwd=self.base_dir,
            env=_minimal_env(LC_ALL="C", LANG="C"),
            stdin=subprocess.DEVNULL,
            user=None if user is None else user.pw_uid,
            group=None if user is None else user.pw_gid,
            extra_groups=None if user is None else [],
            **kwargs,
        )

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _chown_tree(self, root: Path) -> None:
        if self._user is None:
            return
        self._chown(root)
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                os.chown(Path(folder, name), self._user.pw_uid, self._user.pw_gid,
                         follow_symlinks=False)  # fmt: skip

    def _grant_traverse(self) -> None:
        """Let the server user reach ``base_dir``: add o+x where it is missing on our folders."""
        if self._user is None:
            return
        uid, gid = self._user.pw_uid, self._user.pw_gid
        groups = set(os.getgrouplist(self._user.pw_name, gid))
        for folder in reversed(self.base_dir.parents):
            info = folder.stat()
            mode = info.st_mode
            if (
                (info.st_uid == uid and mode & stat.S_IXUSR)
                or (info.st_gid in groups and mode & stat.S_IXGRP)
                or mode & stat.S_IXOTH
            ):
                continue
            if info.st_uid != os.geteuid():
                raise ServerError(
                    f"user {self._user.pw_name} cannot reach {self.base_dir}: "
                    f"{folder} is not searchable and not ours to change"
                )
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)

    def _run_as_server_user(self, args: list[str], what: str) -> None:
        proc = self._popen_as_server_user(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output, _ = proc.communicate()
        if proc.returncode != 0:
            raise ServerError(
                f"{what} failed ({proc.returncode}):\n{output.decode(errors='replace')}"
            )

    def _initdb_args(self, target: Path) -> list[str]:
        return [
            str(self.bin_dir / "initdb"),
            "-D", str(target),
            "-U", "postgres",
            "-A", "trust",
            "-E", "UTF8",
            "--locale=C",
            "--no-instructions",
        ]  # fmt: skip

    def _prepare(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        # every time: pytest resets its /tmp/pytest-of-<user> to 0700 at each session start
        self._grant_traverse()
        if (self.data_dir / "PG_VERSION").is_file():
            return
        self.base_dir.chmod(0o700)
        self._chown(self.base_dir)
        self.socket_dir.mkdir(exist_ok=True)
        self._chown(self.socket_dir)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.cache_dir is None:
            self._run_as_server_user(self._initdb_args(self.data_dir), "initdb")
        else:
            self._copy_or_make_template()
        sockets = str(self.socket_dir)
        if len(f"{sockets}/.s.PGSQL.{self.port}") > _UNIX_SOCKET_PATH_MAX:
            sockets = ""  # path too long for a unix socket: TCP only
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# --- private test server (tests/chaos/servers.py) ---\n"
                f"listen_addresses = '{_LOOPBACK}'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = {_conf_quote(sockets)}\n"
                "fsync = on\n"
                "synchronous_commit = on\n"
                "full_page_writes = on\n"
                f"shared_buffers = {_conf_quote(self.shared_buffers)}\n"
                f"max_connections = {self.max_connections}\n"
                "logging_collector = off\n"
                "log_destination = 'stderr'\n"
                "log_line_prefix = '%m [%p] '\n"
            )

    def _copy_or_make_template(self) -> None:
        assert self.cache_dir is not None
        postgres = (self.bin_dir / "postgres").stat()
        key = hashlib.sha256(
            repr(
                (str(self.bin_dir.resolve()), postgres.st_size, postgres.st_mtime_ns,
                 self._initdb_args(Path("x")))
            ).encode()
        ).hexdigest()[:16]  # fmt: skip
        template = self.cache_dir / f"pg-initdb-{key}"
        with _file_lock(self.cache_dir / f"pg-initdb-{key}.lock"):
            if (template / "PG_VERSION").is_file():
                shutil.copytree(template, self.data_dir, symlinks=True)
                self.data_dir.chmod(0o700)
                self._chown_tree(self.data_dir)
                # the copy must be as durable as an initdb'd cluster
                self._run_as_server_user(
                    [str(self.bin_dir / "initdb"), "--sync-only", "-D", str(self.data_dir)],
                    "initdb --sync-only",
                )
                return
            self._run_as_server_user(self._initdb_args(self.data_dir), "initdb")
            staging = self.cache_dir / f".{template.name}.{secrets.token_hex(4)}"
            shutil.copytree(self.data_dir, staging, symlinks=True)
            staging.rename(template)

    def _wait_old_processes_gone(self) -> None:
        pgid = self._pgid
        if pgid is None:
            return
        if not _wait_until(lambda: not _live_group_members(pgid), 30):
            raise ServerError(
                f"PostgreSQL processes of group {pgid} still alive: {_live_group_members(pgid)}"
            )
        self._pgid = None

    def _pid_file_says_ready(self, pid_file: Path) -> bool:
        try:
            lines = pid_file.read_text().splitlines()
        except OSError:
            return False
        # line 1: postmaster PID, line 8: status (starting / stopping / ready / standby)
        return (
            len(lines) >= 8
            and self._proc is not None
            and lines[0].strip() == str(self._proc.pid)
            and lines[7].strip() == "ready"
        )

    def _accepts_connections(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.conninfo("postgres"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True
