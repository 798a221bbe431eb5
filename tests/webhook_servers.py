"""Raw-socket HTTP receivers that misbehave on purpose (slow answers), and a stand-in DNS, for
the webhook tests.

``http.server`` cannot trickle its status line or stall inside a body; these write the bytes
themselves. Each connection is recorded: what was asked (``Host`` header, body), and when the
sender gave up (closed the connection).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

Trickle = Literal["none", "head", "body"]


@dataclass
class Exchange:
    host_header: str
    body: bytes
    server_name: str | None  # TLS SNI, when served over TLS
    started_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None  # when the sender closed the connection


class SlowReceiver:
    """Answers ``200`` with a ``body_length``-byte body; ``trickle`` sends the head or the body
    one byte every ``interval_s``. Serves until closed (a context manager)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        trickle: Trickle = "body",
        interval_s: float = 0.05,
        body_length: int = 10_000,
        status: int = 200,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.trickle = trickle
        self.interval_s = interval_s
        self.body_length = body_length
        self.status = status
        self.exchanges: list[Exchange] = []
        self._tls = tls
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._listener = socket.create_server((host, port))
        self.host, self.port = self._listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def url(self, host: str | None = None, path: str = "/hooks") -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    def __enter__(self) -> SlowReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._thread.join(timeout=5)

    @property
    def open_connections(self) -> int:
        with self._changed:
            return sum(1 for exchange in self.exchanges if exchange.closed_at is None)

    def wait_for_requests(self, count: int, timeout_s: float) -> list[Exchange]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.exchanges) >= count, timeout=timeout_s)
            return list(self.exchanges)

    def wait_until_closed(self, count: int, timeout_s: float) -> list[Exchange]:
        """Until ``count`` exchanges were closed by the sender (or ``timeout_s``)."""
        with self._changed:
            self._changed.wait_for(
                lambda: sum(1 for e in self.exchanges if e.closed_at is not None) >= count,
                timeout=timeout_s,
            )
            return list(self.exchanges)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        server_name: list[str | None] = [None]
        if self._tls is not None:
            self._tls.sni_callback = lambda _sock, name, _ctx: server_name.__setitem__(0, name)
            try:
                connection = self._tls.wrap_socket(connection, server_side=True)
            except (OSError, ssl.SSLError):
                connection.close()
                return
        with connection:
            exchange = self._read_request(connection, server_name[0])
            if exchange is None:
                return
            try:
                self._answer(connection)
                # the sender reads to the end and closes, or gives up and closes: wait for that
                connection.settimeout(30)
                while connection.recv(1024):
                    pass
            except OSError:
                pass
            with self._changed:
                exchange.closed_at = time.monotonic()
                self._changed.notify_all()

    def _read_request(self, connection: socket.socket, server_name: str | None) -> Exchange | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(4096)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = connection.recv(4096)
            if not chunk:
                return None
            body += chunk
        exchange = Exchange(headers.get("host", ""), body, server_name)
        with self._changed:
            self.exchanges.append(exchange)
            self._changed.notify_all()
        return exchange

    def _answer(self, connection: socket.socket) -> None:
        head = (
            f"HTTP/1.1 {self.status} Whatever\r\nContent-Length: {self.body_length}\r\n"
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        body = b"x" * self.body_length
        if self.trickle == "head":
            self._drip(connection, head)
            connection.sendall(body)
        elif self.trickle == "body":
            connection.sendall(head)
            self._drip(connection, body)
        else:
            connection.sendall(head + body)

    def _drip(self, connection: socket.socket, data: bytes) -> None:
        for index in range(len(data)):
            if self._stopping.is_set():
                return
            connection.sendall(data[index : index + 1])
            time.sleep(self.interval_s)  # the misbehaviour under test, not synchronisation


Answer = list[str] | Callable[[], list[str]]


class FakeDns:
    """Stands in for the system resolver for made-up names (``*.test``, RFC 2606) and records
    who asked; every other name goes to the real resolver."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: dict[str, Answer] = {}
        self.asked: list[str] = []
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            answer = self.answers.get(host)
            if answer is None:
                return real(host, port, *args, **kwargs)
            self.asked.append(host)
            addresses = answer() if callable(answer) else answer
            return [
                (
                    socket.AF_INET6 if ":" in address else socket.AF_INET,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    (address, port),
                )
                for address in addresses
            ]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
