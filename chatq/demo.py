"""``chatq demo``: the whole pipeline on the embedded default, end to end, then stopped.

Starts the stack and a small order service, creates a tenant and loads the bundled example
shop into it (documents and FAQ in English and Chinese, intents, settings), then asks the
shop's customer questions with webhooks to a local receiver: FAQ and document questions in both
languages, an order-status look-up, a handoff, a follow-up that needs the session's history and
a question the shop's knowledge cannot answer. It checks each answer for the facts it must hold,
verifies the webhook signatures, prints answers with their route and timings, and stops.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from chatq.knowledge_files import load_bundle
from chatq.order_service import OrderService
from chatq.stack import Stack
from chatq.webhook_receiver import WebhookReceiver
from shared.api_keys import create_api_key
from shared.config import Settings

EXAMPLE_SHOP = Path(__file__).resolve().parent.parent / "examples" / "shop"


@dataclass(frozen=True)
class DemoQuestion:
    label: str
    query: str
    expect: tuple[str, ...]  # regular expressions the answer must all match
    session: str | None = None  # questions with the same session are asked in order


DEMO_QUESTIONS = (
    DemoQuestion("FAQ, zh", "如何重置路由器？", (r"RESET", r"5\s*秒|五秒", r"闪烁")),
    DemoQuestion("FAQ, zh", "退款政策是什么？", (r"7\s*天|七天", r"包装")),
    DemoQuestion("FAQ, en", "How do I reset my router?", (r"RESET", r"5 seconds|five seconds")),
    DemoQuestion("FAQ, en", "What is your refund policy?", (r"7 days|seven days", r"packag")),
    DemoQuestion("document, en", "Is my 8-month-old kettle still under warranty?", (r"1 year",)),
    DemoQuestion("document, zh", "寄到新疆要多少运费？", (r"25",)),
    DemoQuestion("order status", "Where is my order 20261234?", (r"on its way", r"SF Express")),
    DemoQuestion("order status, zh", "帮我查一下订单20261888", (r"备货",)),
    DemoQuestion("handoff", "我要转人工", (r"人工|客服",)),
    DemoQuestion("session turn 1", "How long does delivery take?", (r"day",), "delivery"),
    DemoQuestion("session turn 2", "And if I pay at 4 pm?", (r"next day|15:00|3 pm",), "delivery"),
    DemoQuestion("not in the knowledge", "Do you sell electric scooters?", (r"support@lumenhome",)),
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _submit(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post("/v1/jobs", json=body)
    if response.status_code != 202:
        raise RuntimeError(f"submit failed: {response.status_code} {response.text}")
    return str(response.json()["id"])


def _wait(client: httpx.Client, job_id: str, timeout_s: float = 300) -> dict[str, Any]:
    give_up_at = time.monotonic() + timeout_s
    while time.monotonic() < give_up_at:
        job = client.get(f"/v1/jobs/{job_id}", params={"wait": 30}, timeout=40).json()
        if job["status"] not in {"queued", "in_progress"}:
            return job
    raise RuntimeError(f"job {job_id} did not finish within {timeout_s:g} s")


def _print_job(label: str, job: dict[str, Any], verified: bool, correct: bool) -> None:
    timings = job.get("timings") or {}
    print(f"\n[{label}] {job['query']}")
    if job["status"] != "completed":
        print(f"  -> {job['status']}: {job.get('error')}")
        return
    print(f"  -> {job['response']}")
    sources = ", ".join(f"{s['kind']}:{s['id']}" for s in job.get("sources") or [])
    intent = job.get("intent") or {}
    print(
        f"  route={job['route']} {'sources=' + sources if sources else ''}"
        f"{' intent=' + intent['name'] if intent else ''}{' handoff' if job.get('handoff') else ''}"
    )
    print(
        f"  queue={timings.get('queue_ms', 0):.0f} ms route={timings.get('route_ms') or 0:.0f} ms "
        f"inference={timings.get('inference_ms', 0):.0f} ms "
        f"total={timings.get('total_ms', 0):.0f} ms "
        f"facts={'ok' if correct else 'MISSING'} webhook={'verified' if verified else 'MISSING'}"
    )


def _holds_facts(question: DemoQuestion, job: dict[str, Any]) -> bool:
    answer = job.get("response") or ""
    return job["status"] == "completed" and all(
        re.search(pattern, answer, re.IGNORECASE) for pattern in question.expect
    )


def run_demo(settings: Settings) -> int:
    orders = json.loads((EXAMPLE_SHOP / "orders.json").read_text(encoding="utf-8"))
    with WebhookReceiver() as receiver, OrderService(orders) as order_service:
        env = {
            "CHATQ_API_PORT": str(settings.api_port),
            "CHATQ_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver listens on loopback
            "CHATQ_RULE_HTTP_ALLOW_PRIVATE": "true",  # so does the order service
            "CHATQ_DATA_DIR": str(settings.data_dir),
            "CHATQ_MODEL_DIR": str(settings.model_dir),
        }
        stack = Stack(settings.model_copy(update={"webhook_allow_private": True}), env)
        print(f"Starting the stack on {stack.base_url} (data in {settings.data_dir}) ...")
        stack.start()
        try:
            stack.wait_ready(timeout_s=120)
            key = create_api_key(settings.database_url, f"demo-shop-{uuid.uuid4().hex[:6]}")
            report = load_bundle(
                settings.database_url, key.tenant, EXAMPLE_SHOP, {"orders_url": order_service.url}
            )
            print(
                f"Tenant {key.tenant!r}: {report.documents} documents ({report.chunks} chunks), "
                f"{report.faq} FAQ entries, {report.intents} intents from {EXAMPLE_SHOP}"
            )
            receiver.secrets.append(key.webhook_secret)
            headers = {"Authorization": f"Bearer {key.key}"}
            with httpx.Client(base_url=stack.base_url, headers=headers, timeout=30) as client:
                started = time.monotonic()
                sessions = {q.session: f"demo-{uuid.uuid4().hex[:8]}" for q in DEMO_QUESTIONS}
                ids: list[tuple[DemoQuestion, str]] = []
                for question in DEMO_QUESTIONS:
                    body: dict[str, Any] = {"query": question.query, "webhook_url": receiver.url}
                    if question.session:
                        body["session_id"] = sessions[question.session]
                    job_id = _submit(client, body)
                    ids.append((question, job_id))
                    if question.session:
                        _wait(client, job_id)  # the next turn needs this answer in its history
                jobs = [(question, _wait(client, job_id)) for question, job_id in ids]
                elapsed = time.monotonic() - started
                handoffs = sum(bool(job.get("handoff")) for _, job in jobs)  # + job.handoff
                received = receiver.wait_for(len(ids) + handoffs, timeout_s=60)
            verified_ids = {
                r.payload["data"]["id"]
                for r in received
                if r.verified and r.payload is not None and r.payload["type"] != "job.handoff"
            }
            print("\n=== chatq demo: answers ===")
            correct = 0
            for question, job in jobs:
                holds = _holds_facts(question, job)
                correct += holds
                _print_job(question.label, job, job["id"] in verified_ids, holds)
            completed = sum(job["status"] == "completed" for _, job in jobs)
            print(
                f"\n{completed}/{len(jobs)} jobs completed in {elapsed:.1f} s; "
                f"{correct}/{len(jobs)} answers hold the expected facts; "
                f"{len(verified_ids)}/{len(jobs)} webhooks received with valid signatures."
            )
            ok = completed == correct == len(verified_ids) == len(jobs)
        finally:
            print("Stopping the stack ...")
            stack.stop()
    if not ok:
        print("The demo did not complete: see the answers above.", file=sys.stderr)
    return 0 if ok else 1
