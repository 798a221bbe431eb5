"""Pipeline benchmark: the whole stack (API → RabbitMQ → worker → post-processing → Postgres)
as processes, driven over HTTP by concurrent clients.

1. Batching: the same mixed-length workload (max_new_tokens cycling 8/16/32/64, greedy) with
   one job at a time (CHATQ_MAX_BATCH_SIZE=1), static batching and continuous batching:
   jobs/s, tokens/s, p50/p95 latency as the clients see it, and the ratios.
2. Overhead: one client, one job at a time, short answers: end-to-end latency minus the
   worker's inference time, p50 (what the API, the broker hops, post-processing and the poll
   add to the model's own time).
3. Submit rate: the API alone (no workers) under concurrent clients; every accepted job is then
   checked to be stored and published.

Each configuration gets a fresh Postgres database and RabbitMQ virtual host.

    .venv/bin/python bench/pipeline.py [--model-dir DIR] [--clients 16] [--jobs 48]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from results_file import write_results
from sqlalchemy import func, select

from chatq.demo import free_port
from chatq.namespaces import server_namespace
from chatq.stack import Stack
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.db.engine import (
    dispose_engine,
    session_scope,
)
from shared.db.models import Job
from shared.knowledge.schemas import TenantSettings
from shared.knowledge.store import configure_tenant
from shared.messaging.broker import broker_connection
from shared.messaging.topology import INFERENCE_QUEUE, queue_depth
from training.variants import AGREEMENT_PROMPTS

ROOT = Path(__file__).resolve().parent.parent

NEW_TOKENS_CYCLE = (8, 16, 32, 64)


@dataclass
class Sample:
    latency_s: float
    job: dict[str, Any]


class RunningStack:
    def __init__(self, model_dir: Path, **overrides: str) -> None:
        self.namespace = server_namespace()
        names = self.namespace.__enter__()
        env = {
            "CHATQ_DATABASE_URL": names.database_url,
            "CHATQ_BROKER_URL": names.broker_url,
            "CHATQ_MODEL_DIR": str(model_dir),
            "CHATQ_API_PORT": str(free_port()),
            "CHATQ_LOG_LEVEL": "WARNING",
            # the benchmark is one client pushing as hard as it can: no per-key or tenant limits
            "CHATQ_RATE_LIMIT_PER_S": "0",
            "CHATQ_TENANT_MAX_OPEN_JOBS": "0",
            **{f"CHATQ_{k.upper()}": v for k, v in overrides.items()},
        }
        self.settings = Settings(**{k.removeprefix("CHATQ_").lower(): v for k, v in env.items()})
        self.stack = Stack(self.settings, env)
        self.stack.start()
        self.stack.wait_ready(timeout_s=180)
        issued = create_api_key(self.settings.database_url, "bench")
        # the model's speed is measured here: no knowledge, every job goes to the model
        configure_tenant(
            self.settings.database_url, issued.tenant, TenantSettings(llm_fallback=True)
        )
        key = issued.key
        self.client = httpx.Client(
            base_url=self.stack.base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=120,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    def close(self) -> None:
        self.client.close()
        self.stack.stop()
        dispose_engine(self.settings.database_url)
        self.namespace.__exit__(None, None, None)


def run_job(client: httpx.Client, index: int, new_tokens: int) -> Sample:
    body = {
        "query": AGREEMENT_PROMPTS[index % len(AGREEMENT_PROMPTS)],
        "params": {"max_new_tokens": new_tokens},
    }
    started = time.perf_counter()
    job = client.post("/v1/jobs", json=body).json()
    while job["status"] in {"queued", "in_progress"}:
        job = client.get(f"/v1/jobs/{job['id']}", params={"wait": 60}).json()
    return Sample(time.perf_counter() - started, job)


def warm_up(running: RunningStack) -> None:
    for sample in (run_job(running.client, i, 4) for i in range(2)):
        if sample.job["status"] != "completed":
            raise RuntimeError(f"warm-up job failed: {sample.job}")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def batching_run(model_dir: Path, label: str, clients: int, jobs: int, **overrides: str) -> dict:
    running = RunningStack(model_dir, **overrides)
    try:
        warm_up(running)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            samples = list(
                pool.map(lambda i: run_job(running.client, i, NEW_TOKENS_CYCLE[i % 4]), range(jobs))
            )
        wall = time.perf_counter() - started
    finally:
        running.close()
    failed = [s.job for s in samples if s.job["status"] != "completed"]
    if failed:
        raise RuntimeError(f"{label}: {len(failed)} jobs did not complete: {failed[:2]}")
    latencies = [s.latency_s * 1000 for s in samples]
    tokens = sum(s.job["usage"]["completion_tokens"] for s in samples)
    return {
        "config": label,
        "settings": overrides,
        "jobs": jobs,
        "clients": clients,
        "wall_s": round(wall, 2),
        "jobs_per_s": round(jobs / wall, 3),
        "tokens_per_s": round(tokens / wall, 1),
        "latency_p50_ms": round(percentile(latencies, 0.5), 1),
        "latency_p95_ms": round(percentile(latencies, 0.95), 1),
        "mean_batch_size": round(
            statistics.mean(s.job["timings"]["batch_size"] for s in samples), 2
        ),
        "completion_tokens": tokens,
    }


def overhead_run(model_dir: Path, jobs: int) -> dict:
    running = RunningStack(model_dir, max_batch_size="8", batching="continuous", max_wait_ms="0")
    try:
        warm_up(running)
        samples = [run_job(running.client, i, 4) for i in range(jobs)]
    finally:
        running.close()
    overhead = [s.latency_s * 1000 - s.job["timings"]["inference_ms"] for s in samples]
    queue = [s.job["timings"]["queue_ms"] for s in samples]
    stored = [
        s.job["timings"]["total_ms"]
        - s.job["timings"]["queue_ms"]
        - s.job["timings"]["inference_ms"]
        for s in samples
    ]
    client_side = [s.latency_s * 1000 - s.job["timings"]["total_ms"] for s in samples]
    return {
        "jobs": jobs,
        "overhead_p50_ms": round(percentile(overhead, 0.5), 2),
        "overhead_p95_ms": round(percentile(overhead, 0.95), 2),
        "inference_p50_ms": round(
            percentile([s.job["timings"]["inference_ms"] for s in samples], 0.5), 2
        ),
        "breakdown_p50_ms": {
            "submit_to_engine (API, broker hop, claim)": round(percentile(queue, 0.5), 2),
            "engine_to_stored (hop, post-processing)": round(percentile(stored, 0.5), 2),
            "stored_to_client (notify, poll answer)": round(percentile(client_side, 0.5), 2),
        },
    }


def submit_rate_run(model_dir: Path, seconds: float, clients: int) -> dict:
    running = RunningStack(
        model_dir,
        inference_workers="0",
        postprocess_workers="0",
        api_processes="2",
        api_threads="8",
    )
    accepted = 0
    lock = threading.Lock()
    give_up_at = time.perf_counter() + seconds

    def client_loop(_n: int) -> None:
        nonlocal accepted
        with httpx.Client(base_url=running.stack.base_url, headers=running.client.headers) as c:
            while time.perf_counter() < give_up_at:
                if c.post("/v1/jobs", json={"query": "Where is my order?"}).status_code == 202:
                    with lock:
                        accepted += 1

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            list(pool.map(client_loop, range(clients)))
        wall = time.perf_counter() - started
        with broker_connection(running.settings) as connection:
            published = queue_depth(connection, INFERENCE_QUEUE)
        with session_scope(running.settings.database_url) as session:
            stored = session.scalar(select(func.count()).select_from(Job)) or 0
    finally:
        running.close()
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "accepted": accepted,
        "submits_per_s": round(accepted / wall, 1),
        "stored_jobs": stored,
        "published_messages": published,
        "all_stored_and_published": stored == published == accepted,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Settings().model_dir)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--overhead-jobs", type=int, default=40)
    parser.add_argument("--submit-seconds", type=float, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pipeline.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    size = str(args.batch_size)
    configs = [
        ("one at a time", {"max_batch_size": "1", "batching": "static", "max_wait_ms": "0"}),
        ("static batching", {"max_batch_size": size, "batching": "static", "max_wait_ms": "50"}),
        ("continuous batching", {"max_batch_size": size, "batching": "continuous"}),
    ]
    batching = []
    for label, overrides in configs:
        print(f"running: {label} ...", file=sys.stderr)
        batching.append(batching_run(args.model_dir, label, args.clients, args.jobs, **overrides))
    print("running: overhead ...", file=sys.stderr)
    overhead = overhead_run(args.model_dir, args.overhead_jobs)
    print("running: submit rate ...", file=sys.stderr)
    submit = submit_rate_run(args.model_dir, args.submit_seconds, args.clients)

    base = batching[0]
    print(
        f"\nwhole pipeline on Postgres + RabbitMQ, {args.jobs} jobs, {args.clients} clients, "
        f"max_new_tokens cycling {NEW_TOKENS_CYCLE}, {os.cpu_count()} CPUs"
    )
    header = ("config", "jobs/s", "tok/s", "x jobs/s", "p50 ms", "p95 ms", "batch")
    print("{:22} {:>7} {:>7} {:>8} {:>8} {:>8} {:>6}".format(*header))
    for row in batching:
        print(
            f"{row['config']:22} {row['jobs_per_s']:>7.2f} {row['tokens_per_s']:>7.1f} "
            f"{row['jobs_per_s'] / base['jobs_per_s']:>7.2f}x {row['latency_p50_ms']:>8.0f} "
            f"{row['latency_p95_ms']:>8.0f} {row['mean_batch_size']:>6.1f}"
        )
    print(
        f"\noverhead (latency - inference), one client: p50 {overhead['overhead_p50_ms']} ms, "
        f"p95 {overhead['overhead_p95_ms']} ms; breakdown p50: {overhead['breakdown_p50_ms']}"
    )
    print(
        f"API submit rate, {submit['clients']} clients: {submit['submits_per_s']}/s "
        f"({submit['accepted']} accepted; stored and published: "
        f"{submit['all_stored_and_published']})"
    )
    write_results(
        args.out,
        "pipeline",
        batching=batching,
        speedup_jobs_per_s={
            row["config"]: round(row["jobs_per_s"] / base["jobs_per_s"], 2) for row in batching
        },
        overhead=overhead,
        submit_rate=submit,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
