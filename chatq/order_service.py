"""A local order-lookup service for the example shop (``chatq eval``, demos and tests).

``GET /orders/<id>`` answers 200 with the order's JSON object, or 404 ``{"error":
"not_found"}``. Orders come from a mapping, usually an ``orders.json`` file (``{"20261234":
{"order_id": ..., "status": ...}, ...}``). Every request is recorded. Given a secret, it checks
the Standard Webhooks signature of each request (over the body received, empty for a GET) and
answers 401 when it does not verify.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class OrderRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: str
    verified: bool | None = field(default=None)
    """Whether the signature verified; ``None`` when no secret was given."""


class OrderService:
    def __init__(
        self, orders: Mapping[str, Mapping[str, Any]], *, secret: str | None = None
    ) -> None:
        self.orders = {str(k): dict(v) for k, v in orders.items()}
        self.secret = secret
        self.requests: list[OrderRequest] = []
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length", 0) or 0)
                body = self.rfile.read(length).decode() if length else ""
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = service._verify(headers, body)
                with service._lock:
                    service.requests.append(OrderRequest("GET", self.path, headers, body, verified))
                if verified is False:
                    self._reply(401, {"error": "invalid_signature"})
                    return
                order = service.lookup(self.path)
                if order is None:
                    self._reply(404, {"error": "not_found"})
                else:
                    self._reply(200, order)

            def _reply(self, status: int, payload: Mapping[str, Any]) -> None:
                data = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # callers read ``requests``

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # a short poll interval: stopping it (at the end of every run and test) is quick
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @classmethod
    def from_file(cls, path: Path, *, secret: str | None = None) -> OrderService:
        """Orders from a JSON object of order id → order object; a bad file raises ValueError."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: cannot read orders: {error}") from None
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ValueError(f"{path}: expected a JSON object of order id → order object")
        return cls(data, secret=secret)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def lookup(self, path: str) -> dict[str, Any] | None:
        parts = urlsplit(path).path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "orders":
            return None
        return self.orders.get(unquote(parts[1]))

    def _verify(self, headers: dict[str, str], body: str) -> bool | None:
        if self.secret is None:
            return None
        try:
            Webhook(self.secret).verify(body, headers, json_parse=False)
        except (WebhookVerificationError, ValueError):  # ValueError: a malformed signature
            return False
        return True

    def __enter__(self) -> OrderService:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
