"""The Python client's own behaviour, against an HTTP transport the test answers: retries that
honour Retry-After and never duplicate a submission, problems as errors, webhook checks. (The
client against a running stack: tests/e2e/test_pipeline.py.)"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from chatq.client import AsyncChatqClient, ChatqClient, ChatqError, verify_webhook

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def job_body(status: str = "queued") -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    job_id = str(uuid.uuid4())
    return {
        "id": job_id, "object": "chat.job", "status": status, "query": "hi", "session_id": None,
        "response": None, "route": None, "sources": [], "intent": None, "handoff": False,
        "moderation": None, "usage": None, "timings": None, "engine": None, "error": None,
        "metadata": {}, "priority": 0, "deadline_at": None, "created_at": now,
        "started_at": None, "completed_at": None,
        "links": {"self": f"/v1/jobs/{job_id}", "cancel": f"/v1/jobs/{job_id}/cancel"},
    }  # fmt: skip


class Server:
    """Answers with the given responses in turn and records each request."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0)


def busy(status: int) -> httpx.Response:
    return httpx.Response(status, headers={"Retry-After": "0"}, json={"title": "busy"})


def test_a_submission_is_retried_after_429_and_503_with_one_idempotency_key() -> None:
    server = Server(busy(429), busy(503), httpx.Response(202, json=job_body()))
    with ChatqClient("http://chatq", "cq_key", transport=httpx.MockTransport(server)) as chatq:
        job = chatq.submit("hi", session_id="s-1", metadata={"order": "42"})
    assert job.status == "queued"
    keys = {request.headers["Idempotency-Key"] for request in server.requests}
    assert len(server.requests) == 3 and len(keys) == 1  # the same submission, three times
    assert json.loads(server.requests[0].content) == {
        "query": "hi",
        "session_id": "s-1",
        "metadata": {"order": "42"},
    }
    assert server.requests[0].headers["Authorization"] == "Bearer cq_key"


def test_a_refusal_that_retrying_cannot_mend_is_raised_with_its_problem() -> None:
    problem = {"type": "urn:chatq:problem:not-found", "title": "Not found", "detail": "No job."}
    server = Server(httpx.Response(404, json=problem))
    transport = httpx.MockTransport(server)
    with (
        ChatqClient("http://chatq", "k", transport=transport) as chatq,
        pytest.raises(ChatqError) as refused,
    ):
        chatq.get(uuid.uuid4())
    assert refused.value.status == 404 and refused.value.problem == problem
    assert len(server.requests) == 1


def test_retries_stop_after_max_retries_with_the_last_answer() -> None:
    server = Server(busy(429), busy(429), busy(429))
    transport = httpx.MockTransport(server)
    with (
        ChatqClient("http://chatq", "k", max_retries=2, transport=transport) as chatq,
        pytest.raises(ChatqError) as refused,
    ):
        chatq.submit("hi")
    assert refused.value.status == 429 and len(server.requests) == 3


def test_the_async_client_waits_until_the_job_is_finished() -> None:
    queued, done = job_body("in_progress"), job_body("completed")
    server = Server(busy(503), httpx.Response(200, json=queued), httpx.Response(200, json=done))

    async def run() -> str:
        transport = httpx.MockTransport(server)
        async with AsyncChatqClient("http://chatq", "k", transport=transport) as chatq:
            return (await chatq.wait(queued["id"], timeout_s=10)).status

    assert asyncio.run(run()) == "completed"
    assert all(r.url.params.get("wait") for r in server.requests)  # long-polls


def test_a_webhook_is_verified_and_a_forged_one_refused() -> None:
    body = json.dumps({"type": "job.completed", "data": {"id": "x"}})
    now = datetime.now(UTC)
    signature = Webhook(SECRET).sign("msg_1", now, body)
    headers = {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": signature,
    }
    assert verify_webhook(headers, body.encode(), SECRET)["type"] == "job.completed"
    with pytest.raises(WebhookVerificationError):
        verify_webhook(headers, body.replace("completed", "failed"), SECRET)
