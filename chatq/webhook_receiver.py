"""A local webhook receiver that checks Standard Webhooks signatures (demo and tests).

It answers like a well-behaved receiver: 2xx only after the signature verified, 400 otherwise,
and it can be told to fail (status codes, or a delay that outlasts the sender's timeout).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

# Loopback only: the receiver stands in for a tenant's endpoint in the demo and the tests.
_HOST = "127.0.0.1"


@dataclass
class ReceivedWebhook:
    headers: dict[str, str]
    body: str
    verified: bool
    payload: dict[str, Any] | None
    received_at: float = field(default_factory=time.monotonic)


class WebhookReceiver:
    def __init__(self, secrets: list[str] | None = None) -> None:
        self.secrets: list[str] = list(secrets or [])
        self.received: list[ReceivedWebhook] = []
        self.respond_with: int = 204
        self.delay_s: float = 0.0
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                record = receiver._verify(headers, body)
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                status = receiver.respond_with if record.verified else 400
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver._arrived:
                    receiver.received.append(record)
                    receiver._arrived.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the tests and the demo print what matters

        self._server = ThreadingHTTPServer((_HOST, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self._server.server_port}/hooks"

    def _verify(self, headers: dict[str, str], body: str) -> ReceivedWebhook:
        for secret in self.secrets:
            try:
                payload = Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            return ReceivedWebhook(headers, body, True, payload)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        return ReceivedWebhook(headers, body, False, payload)

    def wait_for(self, count: int, timeout_s: float) -> list[ReceivedWebhook]:
        """Until ``count`` verified deliveries arrived (or ``timeout_s``); returns them all."""
        give_up_at = time.monotonic() + timeout_s
        with self._arrived:
            while sum(r.verified for r in self.received) < count:
                remaining = give_up_at - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.wait(remaining)
            return list(self.received)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
