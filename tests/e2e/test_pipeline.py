"""The whole pipeline as processes (gunicorn, inference worker, Celery), over HTTP, on the
embedded default and on Postgres + RabbitMQ, with the tiny model."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from chatq.client import AsyncChatqClient, ChatqClient, ChatqError
from chatq.webhook_receiver import WebhookReceiver
from shared.db.engine import dispose_engine, session_scope
from shared.db.models import DeliveryStatus, Message, WebhookAttempt, WebhookDelivery
from tests.conftest import BACKENDS, NamespaceFactory, RunningStack, free_port_run, start_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=BACKENDS)
def running(
    request: pytest.FixtureRequest,
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    server_namespace_factory: NamespaceFactory,
) -> Iterator[RunningStack]:
    running = start_stack(
        request.param,
        tiny_model_dir,
        tmp_path_factory.mktemp(f"stack-{request.param}"),
        server_namespace_factory,
        max_batch_size="8",
        max_wait_ms="150",  # long enough for concurrent submissions to share a batch
        default_max_new_tokens="12",
        # worker, post-processor, deliverer: a metrics port each
        metrics_port=str(free_port_run(3)),
    )
    yield running
    running.stack.stop()
    dispose_engine(running.settings.database_url)


@pytest.fixture(scope="module")
def receiver(running: RunningStack) -> Iterator[WebhookReceiver]:
    with WebhookReceiver([running.key.webhook_secret]) as started:
        yield started


@pytest.fixture
def client(running: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.base_url, headers=running.auth, timeout=60) as http:
        yield http


def submit(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def poll_until_finished(client: httpx.Client, job_id: str, timeout_s: float = 90) -> dict[str, Any]:
    give_up_at = time.monotonic() + timeout_s
    while time.monotonic() < give_up_at:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] not in {"queued", "in_progress"}:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish within {timeout_s} s")


def test_a_submitted_job_is_answered_and_polled(client: httpx.Client) -> None:
    accepted = submit(client, query="How do I reset my router?")
    assert accepted["status"] == "queued"
    job = poll_until_finished(client, accepted["id"])
    assert job["status"] == "completed", job
    assert job["response"].strip()
    assert job["route"] == "llm"
    assert job["engine"]["name"] == "onnxruntime"
    assert job["engine"]["providers"][0] == "CPUExecutionProvider"
    assert job["usage"]["completion_tokens"] > 0
    assert job["timings"]["batch_size"] >= 1
    assert job["timings"]["total_ms"] >= job["timings"]["inference_ms"] > 0
    assert job["started_at"] <= job["completed_at"]


def test_wait_returns_as_soon_as_the_job_finishes(client: httpx.Client) -> None:
    job_id = submit(client, query="What is your refund policy?")["id"]
    started = time.monotonic()
    job = client.get(f"/v1/jobs/{job_id}", params={"wait": 40}).json()
    held = time.monotonic() - started
    assert job["status"] == "completed"
    assert held < 20  # it came back with the answer, not at the end of the 40 s wait
    started = time.monotonic()
    again = client.get(f"/v1/jobs/{job_id}", params={"wait": 40}).json()
    assert again["status"] == "completed"
    assert time.monotonic() - started < 20  # a finished job is not held at all
    # the wait answered as its notification rendered the job (Postgres), the second look
    # from the stored row: the same job either way
    assert job == again


def test_a_webhook_arrives_signed_and_verifies(
    client: httpx.Client, receiver: WebhookReceiver, running: RunningStack
) -> None:
    job_id = submit(client, query="Where is my order?", webhook_url=receiver.url)["id"]
    give_up_at = time.monotonic() + 90
    mine = []
    while not mine and time.monotonic() < give_up_at:
        received = receiver.wait_for(len(receiver.received) + 1, timeout_s=1)
        mine = [r for r in received if r.payload and r.payload["data"]["id"] == job_id]
    assert mine, "no webhook arrived for the job"
    webhook = mine[0]
    assert webhook.verified  # standardwebhooks.Webhook(secret).verify accepted it
    assert webhook.payload["type"] == "job.completed"
    assert webhook.payload["data"]["status"] == "completed"
    assert webhook.payload["data"]["response"] == poll_until_finished(client, job_id)["response"]
    # the sender records the attempt once the receiver's answer is back
    give_up_at = time.monotonic() + 30
    while True:
        with session_scope(running.settings.database_url) as session:
            delivery = session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.job_id == uuid.UUID(job_id))
            ).one()
            attempts = session.scalars(
                select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery.id)
            ).all()
        if delivery.status is not DeliveryStatus.PENDING or time.monotonic() > give_up_at:
            break
        time.sleep(0.05)
    assert delivery.id == webhook.headers["webhook-id"]
    assert delivery.status is DeliveryStatus.DELIVERED
    assert [a.status_code for a in attempts] == [204]


def test_the_transcript_holds_both_turns(client: httpx.Client, running: RunningStack) -> None:
    job = poll_until_finished(client, submit(client, query="Do you ship to Norway?")["id"])
    with session_scope(running.settings.database_url) as session:
        rows = session.scalars(
            select(Message).where(Message.job_id == uuid.UUID(job["id"])).order_by(Message.position)
        ).all()
    assert [(m.role, m.content) for m in rows] == [
        ("user", "Do you ship to Norway?"),
        ("assistant", job["response"]),
    ]


def test_twenty_concurrent_jobs_are_answered_in_batches(client: httpx.Client) -> None:
    questions = [f"Question number {n}: where is parcel {n * 7}?" for n in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        accepted = list(pool.map(lambda q: submit(client, query=q), questions))
        jobs = list(pool.map(lambda a: poll_until_finished(client, a["id"]), accepted))
    assert [job["status"] for job in jobs] == ["completed"] * 20
    assert all(job["response"].strip() for job in jobs)
    batch_sizes = [job["timings"]["batch_size"] for job in jobs]
    print(f"batch sizes of 20 concurrent jobs: {sorted(batch_sizes)}")
    assert max(batch_sizes) > 1


def test_a_session_carries_its_history_into_the_next_turn(client: httpx.Client) -> None:
    session_id = f"customer-{time.monotonic_ns()}"
    first = poll_until_finished(
        client, submit(client, query="My name is Sam.", session_id=session_id)["id"]
    )
    second = poll_until_finished(
        client, submit(client, query="What is my name?", session_id=session_id)["id"]
    )
    alone = poll_until_finished(client, submit(client, query="What is my name?")["id"])
    assert first["session_id"] == second["session_id"] == session_id
    assert second["status"] == "completed"
    # the second prompt holds the first exchange: longer than the same question on its own
    # by at least the first answer's tokens
    extra = second["usage"]["prompt_tokens"] - alone["usage"]["prompt_tokens"]
    assert extra >= first["usage"]["completion_tokens"]


def test_chat_answers_in_one_round_trip(client: httpx.Client) -> None:
    response = client.post(
        "/v1/chat",
        json={
            "query": "Can I pay by card?",
            "history": [
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Hi! How can I help?"},
            ],
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed"
    assert body["response"].strip()
    assert client.get(body["links"]["self"]).json()["response"] == body["response"]


def test_a_job_past_its_deadline_expires_without_the_model(client: httpx.Client) -> None:
    job = poll_until_finished(client, submit(client, query="Too late?", deadline_s=0.001)["id"])
    assert job["status"] == "expired"
    assert job["error"]["code"] == "deadline_exceeded"
    assert job["usage"] is None and job["response"] is None


def scrape(url: str) -> dict[str, float]:
    """A Prometheus text exposition as {series: value}, parsed by the client library."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        sample.name + _labels(sample.labels): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def test_every_process_serves_metrics_of_what_it_did(
    client: httpx.Client, running: RunningStack
) -> None:
    api_before = scrape(f"{running.base_url}/metrics")
    job = poll_until_finished(client, submit(client, query="Do you ship abroad?")["id"])
    assert job["status"] == "completed"

    api = scrape(f"{running.base_url}/metrics")
    submitted = "chatq_jobs_submitted_total{}"
    assert api[submitted] == api_before.get(submitted, 0) + 1
    accepted = 'chatq_http_requests_total{endpoint="/v1/jobs",method="POST",status="202"}'
    assert api[accepted] >= 1
    assert 'chatq_queue_depth{queue="chat.inference"}' in api
    assert "chatq_outbox_backlog{}" in api

    port = running.settings.metrics_port
    worker = scrape(f"http://127.0.0.1:{port}/metrics")
    assert worker['chatq_routes_total{route="llm"}'] >= 1
    assert worker["chatq_batch_size_count{}"] >= 1
    assert worker["chatq_generated_tokens_total{}"] >= 1

    postprocess = scrape(f"http://127.0.0.1:{port + 1}/metrics")
    assert postprocess['chatq_jobs_finished_total{route="llm",status="completed"}'] >= 1
    assert postprocess['chatq_job_total_seconds_count{route="llm"}'] >= 1
    assert postprocess["chatq_job_tokens_per_second_count{}"] >= 1

    deliverer = scrape(f"http://127.0.0.1:{port + 2}/metrics")
    assert "chatq_webhook_attempt_seconds_count{}" in deliverer


@pytest.fixture
def openai_client(running: RunningStack) -> Iterator[OpenAI]:
    # the official client, unchanged: only its base URL and key point at chatq
    with OpenAI(
        base_url=f"{running.base_url}/v1", api_key=running.key.key, max_retries=0
    ) as official:
        yield official


def test_the_openai_client_gets_chat_completions(
    openai_client: OpenAI, client: httpx.Client
) -> None:
    completion = openai_client.chat.completions.create(
        model="chatq-shop",
        messages=[
            {"role": "system", "content": "You are a helpful shop assistant."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi! How can I help?"},
            {"role": "user", "content": "Can I pay by card?"},
        ],
        max_tokens=6,
    )
    assert completion.object == "chat.completion"
    assert completion.model == "chatq-shop"
    (choice,) = completion.choices
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage is not None and completion.usage.completion_tokens <= 6
    extension = completion.model_dump()["chatq"]
    assert completion.id == f"chatcmpl-{extension['job_id']}"
    job = client.get(f"/v1/jobs/{extension['job_id']}").json()  # an ordinary job underneath
    assert job["response"] == choice.message.content
    assert job["query"] == "Can I pay by card?" and job["route"] == extension["route"] == "llm"


def test_the_openai_client_streams_chat_completions(
    openai_client: OpenAI, client: httpx.Client
) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model="chatq-shop",
            # the tiny model's answer to this runs the whole 32 tokens (to others it can stop
            # after four)
            messages=[{"role": "user", "content": "What is your refund policy?"}],
            max_tokens=32,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    # the text travelled as the model generated it, not as the finished answer in one piece
    assert len(pieces) >= 2
    (finish,) = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish.choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    job_id = finish.model_dump()["chatq"]["job_id"]
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["response"] == "".join(pieces)
    assert chunks[-1].usage.completion_tokens == job["usage"]["completion_tokens"] <= 32


def sse_events(response: httpx.Response) -> list[tuple[str, Any]]:
    events, name = [], "message"
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def test_chat_streams_its_answer_as_server_sent_events(client: httpx.Client) -> None:
    body = {"query": "Where is my order?", "stream": True, "params": {"max_new_tokens": 32}}
    with client.stream("POST", "/v1/chat", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"delta"} and len(names) >= 3
    job = events[-1][1]
    assert job["status"] == "completed" and job["object"] == "chat.job"
    assert "".join(data["text"] for name, data in events[:-1]) == job["response"]


def test_the_openai_client_is_told_what_chatq_does_not_offer(openai_client: OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError, match="must be the customer's"):
        openai_client.chat.completions.create(
            model="chatq", messages=[{"role": "assistant", "content": "Hi"}]
        )
    with pytest.raises(openai.UnprocessableEntityError):
        openai_client.chat.completions.create(
            model="chatq", messages=[{"role": "user", "content": "Hi"}], n=2
        )


def test_the_python_client_submits_waits_lists_and_chats(running: RunningStack) -> None:
    session = f"client-{uuid.uuid4().hex[:8]}"
    with ChatqClient(running.base_url, running.key.key) as chatq:
        job = chatq.wait(chatq.submit("Do you ship to Macau?", session_id=session).id)
        assert job.status == "completed" and job.response
        assert [listed.id for listed in chatq.jobs(session_id=session)] == [job.id]
        chatted = chatq.chat("And to Hong Kong?", session_id=session)
        assert chatted.status == "completed" and chatted.session_id == session
        with pytest.raises(ChatqError) as refused:
            chatq.cancel(job.id)  # finished already
        assert refused.value.status == 409
        rated = chatq.feedback(job.id, -1, corrected_answer="Yes, we ship to Macau.")
        assert rated["rating"] == -1 and rated["scale"] == "thumbs"
        events = list(chatq.chat_stream("Do you ship to Taiwan?", params={"max_new_tokens": 8}))
        final = events[-1].job
        assert final is not None and final.status == "completed"
        assert "".join(event.text for event in events[:-1]) == final.response

    async def asynchronously() -> tuple[str, str | None, str]:
        async with AsyncChatqClient(running.base_url, running.key.key) as chatq:
            submitted = await chatq.submit("Can I pay by card?")
            status = (await chatq.wait(submitted.id)).status
            streamed = [event async for event in chatq.chat_stream("And by cash?")]
            final = streamed[-1].job
            assert final is not None
            return status, final.response, "".join(event.text for event in streamed[:-1])

    status, response, streamed_text = asyncio.run(asynchronously())
    assert status == "completed" and response == streamed_text
