"""HTTP calls to URLs a tenant chose: only to checked addresses, within one deadline.

Two things an ordinary HTTP client does not do, and a call to someone else's server needs:

* It connects only to the addresses ``resolve_webhook_target`` judged, never resolving the name
  again (DNS rebinding), while the request still names the host (``Host`` header) and TLS still
  sends and verifies the name (SNI, certificate): httpcore connects through a network backend
  that maps the name to the pinned addresses.
* The whole call has one wall-clock deadline. httpx/httpcore timeouts bound each socket operation,
  so a receiver that trickles its answer a byte at a time never trips them; here every operation
  gets at most the time left until the deadline. CPython applies a socket's timeout to a whole
  ``sendall``, TLS handshake or TLS read, so nothing outlives the deadline by more than one
  operation's bookkeeping. Only the first ``MAX_RESPONSE_BYTES`` of the body are read.

Each call has its own connection (no keep-alive): a pooled TLS connection verified for one name
must never carry a request for another name that happens to share its address.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpcore
import httpx

from shared.webhook_urls import WebhookTarget

MAX_RESPONSE_BYTES = 64 * 1024


class DeadlineExceeded(httpcore.TimeoutException):
    """The call's deadline passed before the exchange finished."""


@dataclass(frozen=True)
class WebhookResponse:
    status_code: int
    body: bytes  # at most MAX_RESPONSE_BYTES
    complete: bool  # False: the body was longer and was not read to its end


class WebhookClient:
    """Sends one request per call to a checked target. Thread-safe; holds no connections."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        # building a context loads the CA bundle (tens of ms): once per client, not per call
        self._ssl_context = ssl_context or httpx.create_ssl_context()

    def request(
        self,
        method: str,
        target: WebhookTarget,
        *,
        content: bytes,
        headers: Mapping[str, str],
        deadline: float,
    ) -> WebhookResponse:
        """Send and read the answer by ``deadline`` (a ``time.monotonic()`` instant) or raise
        an ``httpcore`` error (``DeadlineExceeded`` when time ran out)."""
        url = target.url
        backend = _PinnedBackend(url.raw_host.decode("ascii"), target.addresses, deadline)
        request_headers = [(b"host", url.netloc)]
        request_headers += [(name.encode(), value.encode()) for name, value in headers.items()]
        with (
            httpcore.ConnectionPool(
                ssl_context=self._ssl_context,
                max_connections=1,
                max_keepalive_connections=0,
                network_backend=backend,
            ) as pool,
            pool.stream(
                method,
                httpcore.URL(
                    scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
                ),
                headers=request_headers,
                content=content,
                extensions={"timeout": _timeouts(deadline)},
            ) as response,
        ):
            body = bytearray()
            complete = True
            for chunk in response.iter_stream():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    complete = False
                    break
            return WebhookResponse(response.status, bytes(body[:MAX_RESPONSE_BYTES]), complete)


def _timeouts(deadline: float) -> dict[str, float]:
    left = max(0.0, deadline - time.monotonic())
    return {"connect": left, "read": left, "write": left, "pool": left}


def _time_left(deadline: float, operation: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded(f"deadline passed before {operation}")
    return left


def _bounded(timeout: float | None, left: float) -> float:
    return left if timeout is None else min(timeout, left)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects ``host`` to its checked addresses only, and bounds every stream by the deadline."""

    def __init__(self, host: str, addresses: tuple[str, ...], deadline: float) -> None:
        self._host = host
        self._addresses = addresses
        self._deadline = deadline
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        if host != self._host or not self._addresses:
            raise httpcore.ConnectError(f"no checked address for {host!r}")
        failure: Exception | None = None
        for address in self._addresses:  # in the resolver's order, as a client would try them
            left = _time_left(self._deadline, f"connecting to {address}")
            try:
                stream = self._sockets.connect_tcp(
                    address,
                    port,
                    timeout=_bounded(timeout, left),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
                continue
            return _DeadlineStream(stream, self._deadline)
        assert failure is not None
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are never sent over Unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)  # httpcore's retry back-off; retries are off (retries=0)


class _DeadlineStream(httpcore.NetworkStream):
    """A stream whose every operation ends by the deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        left = _time_left(self._deadline, "the answer was read")
        return self._stream.read(max_bytes, timeout=_bounded(timeout, left))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        left = _time_left(self._deadline, "the request was sent")
        self._stream.write(buffer, timeout=_bounded(timeout, left))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(self._deadline, "the TLS handshake")
        secured = self._stream.start_tls(
            ssl_context, server_hostname=server_hostname, timeout=_bounded(timeout, left)
        )
        return _DeadlineStream(secured, self._deadline)

    def get_extra_info(self, info: str) -> object:
        return self._stream.get_extra_info(info)
