"""Attacks on the API's capacity, from outside, for the serving benchmark and its e2e test.

``LongPollFlood`` holds many ``GET /v1/jobs/{id}?wait=N`` open at once; ``Slowloris`` keeps
connections that trickle one header byte at a time and never finish their request (and opens a
new one whenever the server cuts one, as a real attacker would). Both speak raw HTTP over
sockets, so "the request has been sent" is exact: ``__enter__`` returns once every request (or
request line) is on the wire.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

CONNECT_TIMEOUT_S = 10.0


def _connect(host: str, port: int) -> socket.socket:
    connection = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


@dataclass
class LongPollFlood:
    """``len(keys) * per_key`` long-polls on ``job_id``, each waiting up to ``wait_s``."""

    host: str
    port: int
    job_id: str
    keys: list[str]
    per_key: int
    wait_s: float
    _sockets: list[socket.socket] = field(default_factory=list)

    def __enter__(self) -> LongPollFlood:
        for key in self.keys:
            request = (
                f"GET /v1/jobs/{self.job_id}?wait={self.wait_s:g} HTTP/1.1\r\n"
                f"Host: {self.host}:{self.port}\r\nAuthorization: Bearer {key}\r\n\r\n"
            ).encode()
            for _ in range(self.per_key):
                connection = _connect(self.host, self.port)
                connection.sendall(request)
                self._sockets.append(connection)
        return self

    def still_waiting(self) -> int:
        """Long-polls the server has not answered yet (each one holds its wait)."""
        readable, _, _ = select.select(self._sockets, [], [], 0)
        return len(self._sockets) - len(readable)

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        for connection in self._sockets:
            connection.close()
        self._sockets.clear()


@dataclass
class Slowloris:
    """``connections`` requests whose headers arrive one byte every ``interval_s``, forever."""

    host: str
    port: int
    connections: int
    interval_s: float = 0.5
    cut_by_server: int = 0
    first_cut: threading.Event = field(default_factory=threading.Event)
    _sockets: list[socket.socket] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _open(self) -> socket.socket:
        connection = _connect(self.host, self.port)
        # a request line and the start of a header that never ends
        connection.sendall(f"GET /healthz HTTP/1.1\r\nHost: {self.host}\r\nX-Slow: ".encode())
        return connection

    def __enter__(self) -> Slowloris:
        self._sockets = [self._open() for _ in range(self.connections)]
        self._thread = threading.Thread(target=self._trickle, name="slowloris", daemon=True)
        self._thread.start()
        return self

    def _trickle(self) -> None:
        while not self._stop.wait(self.interval_s):
            for index, connection in enumerate(self._sockets):
                try:
                    connection.sendall(b"a")
                    # a server that answered (408/400) or closed the connection has cut it
                    readable, _, _ = select.select([connection], [], [], 0)
                    if readable:
                        raise ConnectionError("answered or closed by the server")
                except OSError:
                    connection.close()
                    self.cut_by_server += 1
                    self.first_cut.set()
                    if self._stop.is_set():
                        return
                    try:
                        self._sockets[index] = self._open()
                    except OSError:
                        time.sleep(self.interval_s)  # the server refuses for now: try later

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for connection in self._sockets:
            connection.close()
        self._sockets.clear()
