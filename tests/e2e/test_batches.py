"""A batch through the whole pipeline as processes (gunicorn with its batch feeder, the inference
worker with the tiny model, Celery), over HTTP, on the embedded default and on Postgres +
RabbitMQ: accepted whole, fed to the queue a few at a time without holding up an interactive
job, completed, its results read as JSON lines and its signed ``batch.completed`` received;
and the same through the Python clients."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatq.client import AsyncChatqClient, BatchResultLine, ChatqClient
from chatq.webhook_receiver import WebhookReceiver
from shared.db.engine import dispose_engine
from tests.conftest import BACKENDS, NamespaceFactory, RunningStack, start_stack

pytestmark = pytest.mark.e2e

BATCH_SIZE = 50


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
        tmp_path_factory.mktemp(f"batches-{request.param}"),
        server_namespace_factory,
        max_batch_size="8",
        default_max_new_tokens="8",
        batch_feed_depth="4",  # the batch enters the queue a few jobs at a time
    )
    yield running
    running.stack.stop()
    dispose_engine(running.settings.database_url)


@pytest.fixture
def client(running: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.base_url, headers=running.auth, timeout=60) as http:
        yield http


def wait_for_batch(client: httpx.Client, batch_id: str, timeout_s: float = 240) -> dict[str, Any]:
    give_up_at = time.monotonic() + timeout_s
    while time.monotonic() < give_up_at:
        batch = client.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] in {"completed", "cancelled"}:
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} did not end within {timeout_s} s: {batch}")


def test_a_batch_is_answered_in_full_and_its_webhook_arrives_signed(
    client: httpx.Client, running: RunningStack
) -> None:
    lines = [
        {"custom_id": f"order-{n}", "body": {"query": f"Where is my order number {n}?"}}
        for n in range(BATCH_SIZE)
    ]
    with WebhookReceiver([running.key.webhook_secret]) as receiver:
        accepted = client.post(
            "/v1/batches",
            content="\n".join(json.dumps(line) for line in lines),
            params={"webhook_url": receiver.url, "metadata": json.dumps({"run": "e2e"})},
            headers={"Content-Type": "application/jsonl"},
        )
        assert accepted.status_code == 202, accepted.text
        batch_id = accepted.json()["id"]
        # an interactive job submitted after the batch, at the same default priority
        interactive = client.post("/v1/jobs", json={"query": "Can I still ask something?"})
        assert interactive.status_code == 202

        batch = wait_for_batch(client, batch_id)
        job = client.get(f"/v1/jobs/{interactive.json()['id']}", params={"wait": 30}).json()
        webhooks = receiver.wait_for(1, timeout_s=60)

    assert batch["status"] == "completed"
    assert batch["request_counts"]["total"] == batch["request_counts"]["completed"] == BATCH_SIZE
    assert batch["metadata"] == {"run": "e2e"}
    # it did not wait for the batch: the batch is let into the queue a few jobs at a time
    assert job["status"] == "completed"
    assert job["completed_at"] < batch["completed_at"]

    results = client.get(f"/v1/batches/{batch_id}/results")
    assert results.status_code == 200
    assert results.headers["content-type"].startswith("application/jsonl")
    rows = [json.loads(text) for text in results.text.splitlines()]
    assert [row["custom_id"] for row in rows] == [line["custom_id"] for line in lines]
    assert {row["status"] for row in rows} == {"completed"}
    assert all(row["response"]["response"].strip() for row in rows)
    assert rows[3]["response"]["query"] == "Where is my order number 3?"

    [webhook] = [w for w in webhooks if w.payload and w.payload["type"] == "batch.completed"]
    assert webhook.verified  # signed with the submitting key's secret
    assert webhook.payload is not None
    assert webhook.payload["data"]["id"] == batch_id
    assert webhook.payload["data"]["request_counts"]["completed"] == BATCH_SIZE
    # the batch's jobs sent no webhooks of their own: none of their lines asked for one
    assert len(webhooks) == 1


def test_the_python_clients_submit_wait_for_and_read_a_batch(running: RunningStack) -> None:
    jobs = [{"query": f"Is item {n} in stock?", "params": {"max_new_tokens": 4}} for n in range(5)]

    with ChatqClient(running.base_url, running.key.key) as chatq:
        submitted = chatq.batch(jobs, metadata={"client": "sync"})
        ended = chatq.wait_batch(submitted.id, timeout_s=180)
        results = chatq.batch_results(submitted.id)

    async def with_asyncio() -> list[BatchResultLine]:
        async with AsyncChatqClient(running.base_url, running.key.key) as chatq:
            batch = await chatq.batch(jobs[:2])
            await chatq.wait_batch(batch.id, timeout_s=180)
            return await chatq.batch_results(batch.id)

    assert submitted.request_counts.total == 5
    assert ended.status == "completed" and ended.request_counts.completed == 5
    assert [row.response.query for row in results] == [job["query"] for job in jobs]
    assert all(row.status == "completed" and row.custom_id is None for row in results)
    assert [row.status for row in asyncio.run(with_asyncio())] == ["completed", "completed"]
