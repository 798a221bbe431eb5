"""``chatq demo``: the whole pipeline on the embedded default, end to end, then stopped.

Starts the stack, issues an API key, submits the two example questions and a two-turn session
with a webhook to a local receiver, waits for the answers and the signed webhooks, verifies the
signatures, prints answers with timings, and stops everything.
"""

from __future__ import annotations

import socket
import sys
import time
import uuid
from typing import Any

import httpx

from chatq.stack import Stack
from chatq.webhook_receiver import WebhookReceiver
from shared.api_keys import create_api_key
from shared.config import Settings

EXAMPLE_QUESTIONS = ("How do I reset my router?", "What is your refund policy?")
SESSION_TURNS = (
    "Hi! I ordered a blue kettle last week. My name is Sam.",
    "Can I still change the colour of my order to red?",
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


def _print_job(label: str, job: dict[str, Any], verified: bool) -> None:
    timings = job.get("timings") or {}
    usage = job.get("usage") or {}
    print(f"\n[{label}] {job['query']}")
    if job["status"] != "completed":
        print(f"  -> {job['status']}: {job.get('error')}")
        return
    print(f"  -> {job['response']}")
    print(
        f"  status={job['status']} queue={timings.get('queue_ms', 0):.0f} ms "
        f"inference={timings.get('inference_ms', 0):.0f} ms batch={timings.get('batch_size')} "
        f"total={timings.get('total_ms', 0):.0f} ms tokens={usage.get('completion_tokens')} "
        f"webhook={'verified' if verified else 'MISSING'}"
    )


def run_demo(settings: Settings) -> int:
    with WebhookReceiver() as receiver:
        env = {
            "CHATQ_API_PORT": str(settings.api_port),
            "CHATQ_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver listens on loopback
            "CHATQ_DATA_DIR": str(settings.data_dir),
            "CHATQ_MODEL_DIR": str(settings.model_dir),
        }
        stack = Stack(settings.model_copy(update={"webhook_allow_private": True}), env)
        print(f"Starting the stack on {stack.base_url} (data in {settings.data_dir}) ...")
        stack.start()
        try:
            stack.wait_ready(timeout_s=120)
            key = create_api_key(settings.database_url, f"demo-{uuid.uuid4().hex[:6]}")
            receiver.secrets.append(key.webhook_secret)
            headers = {"Authorization": f"Bearer {key.key}"}
            with httpx.Client(base_url=stack.base_url, headers=headers, timeout=30) as client:
                started = time.monotonic()
                ids = [
                    (f"question {n}", _submit(client, {"query": q, "webhook_url": receiver.url}))
                    for n, q in enumerate(EXAMPLE_QUESTIONS, start=1)
                ]
                session_id = f"demo-{uuid.uuid4().hex[:8]}"
                for turn, query in enumerate(SESSION_TURNS, start=1):
                    body = {"query": query, "session_id": session_id, "webhook_url": receiver.url}
                    job_id = _submit(client, body)
                    ids.append((f"session turn {turn}", job_id))
                    _wait(client, job_id)  # the next turn needs this answer in its history
                jobs = [(label, _wait(client, job_id)) for label, job_id in ids]
                elapsed = time.monotonic() - started
                received = receiver.wait_for(len(ids), timeout_s=60)
            verified_ids = {
                r.payload["data"]["id"] for r in received if r.verified and r.payload is not None
            }
            print("\n=== chatq demo: answers ===")
            for label, job in jobs:
                _print_job(label, job, job["id"] in verified_ids)
            completed = sum(job["status"] == "completed" for _, job in jobs)
            print(
                f"\n{completed}/{len(jobs)} jobs completed in {elapsed:.1f} s; "
                f"{len(verified_ids)}/{len(jobs)} webhooks received with valid signatures."
            )
            ok = completed == len(jobs) and len(verified_ids) == len(jobs)
        finally:
            print("Stopping the stack ...")
            stack.stop()
    if not ok:
        print("The demo did not complete: see the log lines above.", file=sys.stderr)
    return 0 if ok else 1
