"""Knowledge and routing through the whole stack, over HTTP, on the embedded default and on
Postgres + RabbitMQ: a tenant uploads knowledge through the API and the very next job is
answered from it; webhooks carry the route, sources and intent; a handoff sends its own event;
and ``chatq demo`` answers the bundled shop's questions right."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatq.webhook_receiver import WebhookReceiver
from shared.api_keys import create_api_key
from shared.db.engine import dispose_engine
from tests.conftest import BACKENDS, REPO_ROOT, NamespaceFactory, RunningStack, start_stack
from tests.e2e.test_pipeline import poll_until_finished, submit

pytestmark = pytest.mark.e2e

RETURNS = (
    "# Returns\n\n## No-reason returns\nYou can return any product within 7 days of delivery "
    "without giving a reason, as long as the packaging is intact.\n"
)
RETURNS_ZH = "# 退货政策\n\n## 无理由退货\n自签收之日起7天内可无理由退货，商品包装需保持完好。\n"


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
        tmp_path_factory.mktemp(f"routing-{request.param}"),
        server_namespace_factory,
        default_max_new_tokens="8",
    )
    yield running
    running.stack.stop()
    dispose_engine(running.settings.database_url)


@pytest.fixture
def client(running: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.base_url, headers=running.auth, timeout=60) as http:
        yield http


def ask(client: httpx.Client, query: str, **body: Any) -> dict[str, Any]:
    return poll_until_finished(client, submit(client, query=query, **body)["id"], timeout_s=120)


def test_uploaded_knowledge_answers_the_next_job_and_webhooks_carry_the_route(
    running: RunningStack, client: httpx.Client
) -> None:
    put = client.put("/v1/knowledge/documents/returns", json={"title": "Returns", "text": RETURNS})
    assert put.status_code in (200, 201), put.text
    assert client.put(
        "/v1/knowledge/documents/returns.zh", json={"title": "退货政策", "text": RETURNS_ZH}
    ).status_code in (200, 201)
    faq = {
        "question": "How do I reset my router?",
        "answer": "Hold the RESET button on the back for 5 seconds until the light flashes.",
        "alternatives": ["How can I factory reset the router?"],
    }
    assert client.put("/v1/knowledge/faq/reset", json=faq).status_code in (200, 201)
    intent = {
        "examples": ["I want to talk to a real person"],
        "keywords": ["human agent", "转人工"],
        "handler": {
            "type": "handoff",
            "answer": {"en": "A colleague takes over.", "zh": "正在转人工。"},
        },
    }
    assert client.put("/v1/intents/human", json=intent).status_code in (200, 201)

    with WebhookReceiver([running.key.webhook_secret]) as receiver:
        hook = {"webhook_url": receiver.url}
        faq_job = ask(client, "how can I reset my router?", **hook)
        document_job = ask(client, "How many days do I have to return something?", **hook)
        chinese_job = ask(client, "收到货以后几天内可以退货？", **hook)
        handoff_job = ask(client, "I need a human agent please", **hook)
        received = receiver.wait_for(5, timeout_s=60)

    assert faq_job["route"] == "faq"
    assert faq_job["response"].startswith("Hold the RESET button")
    assert faq_job["sources"][0]["kind"] == "faq" and faq_job["sources"][0]["id"] == "reset"
    assert document_job["route"] == "knowledge"
    assert "7 days" in document_job["response"]
    assert document_job["sources"][0]["id"] == "returns"
    assert chinese_job["route"] == "knowledge" and "7天" in chinese_job["response"]
    assert chinese_job["sources"][0]["id"] == "returns.zh"
    assert handoff_job["route"] == "rule" and handoff_job["handoff"] is True
    assert handoff_job["intent"]["name"] == "human"
    for job in (faq_job, document_job, chinese_job, handoff_job):
        assert job["engine"] is None  # the model never ran
        assert job["timings"]["route_ms"] is not None

    events = {(r.payload["type"], r.payload["data"]["id"]) for r in received if r.verified}
    assert ("job.handoff", handoff_job["id"]) in events
    assert ("job.completed", handoff_job["id"]) in events
    by_id = {r.payload["data"]["id"]: r.payload["data"] for r in received if r.payload}
    assert by_id[document_job["id"]]["route"] == "knowledge"
    assert by_id[document_job["id"]]["sources"] == document_job["sources"]
    assert by_id[handoff_job["id"]]["intent"]["name"] == "human"


def catalogue(products: int) -> dict[str, str]:
    """A new tenant's large upload: a document per product, a few sections each."""
    return {
        f"product-{n}": (
            f"# Lumen lamp L{n}\n\n## Light\nThe L{n} gives {300 + n * 7} lumens and dims in "
            f"{n % 5 + 3} steps. Its colour temperature runs from 2700 K to {4000 + n * 50} K.\n\n"
            f"## Power\nThe L{n} draws {5 + n % 9} watts and runs on a USB-C adapter. Its battery "
            f"lasts {6 + n % 7} hours on the lowest step.\n\n"
            f"## Care\nWipe the L{n} with a dry cloth. Keep it away from water and do not open "
            f"the housing: the warranty of {1 + n % 3} years ends if it is opened.\n"
        )
        for n in range(products)
    }


def test_a_tenants_large_upload_does_not_hold_the_other_tenants_answers(
    running: RunningStack, client: httpx.Client
) -> None:
    faq = {"question": "Do you ship abroad?", "answer": "We ship to 30 countries in Europe."}
    assert client.put("/v1/knowledge/faq/abroad", json=faq).status_code in (200, 201)
    assert ask(client, "do you ship abroad?")["route"] == "faq"  # this tenant is indexed now
    newcomer = create_api_key(running.settings.database_url, f"lamps-{running.backend}")
    with httpx.Client(
        base_url=running.base_url,
        headers={"Authorization": f"Bearer {newcomer.key}"},
        timeout=60,
    ) as lamps:
        for doc_id, text in catalogue(20).items():
            put = lamps.put(
                f"/v1/knowledge/documents/{doc_id}", json={"title": doc_id, "text": text}
            )
            assert put.status_code in (200, 201), put.text
        # the newcomer's first question waits while its 60 chunks and their sentences are
        # embedded (seconds); a question of another tenant asked just after it is answered
        # meanwhile
        waiting = submit(lamps, query="How many lumens does the L7 give?")
        other = submit(client, query="do you ship abroad?")
        answered = poll_until_finished(client, other["id"], timeout_s=120)
        indexed = poll_until_finished(lamps, waiting["id"], timeout_s=300)
    assert answered["route"] == "faq" and indexed["route"] == "knowledge"
    assert "349" in indexed["response"]
    assert answered["completed_at"] < indexed["completed_at"]


def test_abuse_is_blocked_before_the_model_and_transcripts_keep_no_phone_numbers(
    running: RunningStack, client: httpx.Client
) -> None:
    with WebhookReceiver([running.key.webhook_secret]) as receiver:
        blocked = ask(
            client, "You stupid f.u.c.k.i.n.g idiots, where is my parcel?",
            webhook_url=receiver.url,
        )  # fmt: skip
        (delivered,) = receiver.wait_for(1, timeout_s=60)
    assert blocked["route"] == "moderation" and blocked["engine"] is None
    assert blocked["moderation"]["flagged"] is True
    assert blocked["moderation"]["stage"] == "input"
    assert blocked["moderation"]["action"] == "block"
    assert delivered.payload is not None
    assert delivered.payload["data"]["moderation"] == blocked["moderation"]

    phone = "13812345678"
    job = ask(client, f"我的手机号是{phone}，订单什么时候发货？", session_id="e2e-privacy")
    assert job["status"] == "completed"
    assert job["query"].endswith("订单什么时候发货？") and phone in job["query"]  # still in clear
    messages = client.get("/v1/sessions/e2e-privacy/messages").json()["data"]
    assert messages[0]["content"] == "我的手机号是<PHONE_1>，订单什么时候发货？"
    assert all(phone not in message["content"] for message in messages)
    assert client.delete("/v1/sessions/e2e-privacy").status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}").json()["query"] == ""


def test_the_model_answers_what_knowledge_does_not_cover_where_allowed(
    client: httpx.Client,
) -> None:
    # the stacks of these tests allow the model alone (tests/conftest.py start_stack)
    job = ask(client, "Write a haiku about the sea")
    assert job["status"] == "completed"
    assert job["route"] == "llm"
    assert job["engine"]["name"] == "onnxruntime"


@pytest.mark.slow
def test_the_demo_answers_the_shops_questions_right(tmp_path: Path) -> None:
    # `make test` builds the default model first; the demo runs on the embedded default
    env = {
        **os.environ,
        "CHATQ_DATA_DIR": str(tmp_path / "demo-data"),
        "CHATQ_DATABASE_URL": "",
        "CHATQ_BROKER_URL": "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "chatq.cli", "demo"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "12/12 answers hold the expected facts" in done.stdout
