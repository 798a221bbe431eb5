"""A fake chatq API for the runner: ``POST /v1/jobs`` and ``GET /v1/jobs/{id}?wait=N``.

It answers from a table (query → final job fields), keeps a job in progress for a set number of
polls, can throttle submissions with 429 + Retry-After, and records every submission with
whether an earlier job of its session was still unfinished (which the runner must never do).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

API_KEY = "cq_test-key"
PENDING = {"queued", "in_progress"}


@dataclass
class FakeJob:
    id: str
    query: str
    session_id: str | None
    params: dict[str, Any]
    outcome: dict[str, Any]
    status: str = "queued"
    polls: int = 0
    session_busy_at_submit: bool = False

    def view(self) -> dict[str, Any]:
        done = self.status not in PENDING
        return {
            "id": self.id,
            "object": "chat.job",
            "status": self.status,
            "query": self.query,
            "session_id": self.session_id,
            "response": self.outcome.get("response") if done else None,
            "route": self.outcome.get("route") if done else None,
            "sources": self.outcome.get("sources", []) if done else [],
            "intent": self.outcome.get("intent") if done else None,
            "handoff": bool(self.outcome.get("handoff")) if done else False,
            "timings": {"total_ms": 12.5} if done else None,
            "error": self.outcome.get("error") if done else None,
        }


@dataclass
class FakeChatq:
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    polls_before_done: int = 1
    throttle_submits: int = 0
    retry_after: str = "1"
    jobs: list[FakeJob] = field(default_factory=list)
    throttled: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def outcome(self, query: str) -> dict[str, Any]:
        default = {"status": "completed", "response": "I do not know.", "route": "fallback"}
        return {**default, **self.answers.get(query, {})}

    def submissions(self, session_id: str | None = None) -> list[FakeJob]:
        return [j for j in self.jobs if session_id is None or j.session_id == session_id]


def _problem(status: int, title: str, detail: str) -> dict[str, Any]:
    return {
        "type": f"urn:chatq:problem:{status}",
        "title": title,
        "status": status,
        "detail": detail,
    }


def serve(fake: FakeChatq) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any], **headers: str) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            kind = "application/json" if status < 400 else "application/problem+json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {API_KEY}":
                return True
            self._send(401, _problem(401, "Missing or invalid API key", "no such key"))
            return False

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if not self._authorised():
                return
            with fake.lock:
                if fake.throttled < fake.throttle_submits:
                    fake.throttled += 1
                    self._send(
                        429,
                        _problem(429, "Too many requests", "slow down"),
                        Retry_After=fake.retry_after,
                    )
                    return
                session_id = body.get("session_id")
                busy = any(j.status in PENDING for j in fake.jobs if j.session_id == session_id)
                job = FakeJob(
                    id=str(uuid.uuid4()),
                    query=body["query"],
                    session_id=session_id,
                    params=body.get("params", {}),
                    outcome=fake.outcome(body["query"]),
                    session_busy_at_submit=busy,
                )
                fake.jobs.append(job)
            self._send(202, job.view())

        def do_GET(self) -> None:
            if not self._authorised():
                return
            parts = urlsplit(self.path)
            job_id = parts.path.removeprefix("/v1/jobs/")
            assert "wait" in parse_qs(parts.query)
            with fake.lock:
                job = next((j for j in fake.jobs if j.id == job_id), None)
                if job is None:
                    self._send(404, _problem(404, "Not found", "no such job"))
                    return
                if job.status in PENDING:
                    if job.polls < fake.polls_before_done:
                        job.polls += 1
                        job.status = "in_progress"
                    else:
                        job.status = job.outcome["status"]
                view = job.view()
            self._send(200, view)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def fake_chatq() -> Iterator[FakeChatq]:
    fake = FakeChatq()
    server = serve(fake)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    fake.url = f"http://{host!s}:{port}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
