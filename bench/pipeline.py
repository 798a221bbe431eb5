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

Each configuration gets a fresh Postgres database and RabbitMQ virtual host. The worker runs
the fp32 export unless ``CHATQ_MODEL_VARIANT`` in the environment names another (its own
default, ``auto``, runs int8 on CPUs with int8 dot products; every earlier figure is fp32's).

The submit rate's clients are cheap on purpose: keep-alive connections driven by asyncio in a
process of their own, each sending one request encoded once, measured after a short warm-up
(``SUBMIT_WARM_UP_S``). On this 2-core machine the clients share the CPUs with the API, Postgres
and RabbitMQ: httpx clients on threads in this process spent 1.5 ms of CPU per request (its
client machinery, and the GIL they share with this process), up to half of what the API spends
on one, so the figure measured the client as much as the API; these spend 0.15 ms. Parts 1 and
2 wait on the model and keep httpx.

    .venv/bin/python bench/pipeline.py [--model-dir DIR] [--clients 16] [--jobs 48]
        [--parts batching,overhead,submit]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
PARTS = ("batching", "overhead", "submit")
SUBMIT_BODY = b'{"query": "Where is my order?"}'
# The submit rate is measured after this much of the same load: each API process opens its
# broker connections and prepares its statements on first use, a cost paid once per process.
SUBMIT_WARM_UP_S = 2.0


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
            # fp32 unless the environment names another: the worker's default (auto) runs int8
            # on CPUs with int8 dot products, and the batching and overhead figures of every
            # session since the first are fp32's
            "CHATQ_MODEL_VARIANT": os.environ.get("CHATQ_MODEL_VARIANT", "fp32"),
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


@dataclass(frozen=True)
class SubmitLoad:
    """What the load generator saw: answers by status, how long the load lasted, and the CPU
    time the load generator itself spent meanwhile."""

    statuses: dict[int, int]
    wall_s: float
    cpu_s: float

    @property
    def accepted(self) -> int:
        return self.statuses.get(202, 0)


def submit_request(base_url: str, authorization: str) -> bytes:
    """One ``POST /v1/jobs`` as bytes on the wire, sent again and again on one connection."""
    host = urlsplit(base_url).netloc
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(SUBMIT_BODY)}\r\n\r\n"
    )
    return head.encode("latin-1") + SUBMIT_BODY


def response_status_and_length(head: bytes) -> tuple[int, int]:
    """The status and ``Content-Length`` of a response head (the API never sends chunked
    bodies to a POST, so a head without a length is an error)."""
    status = int(head[9:12])
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(value)
    raise RuntimeError(f"a response without Content-Length: {head[:200]!r}")


async def _submit_until(base_url: str, request: bytes, give_up_at: float) -> dict[int, int]:
    """One client: the same request on one keep-alive connection (a new one if the API closes
    it) until ``give_up_at`` (``time.monotonic``)."""
    parts = urlsplit(base_url)
    statuses: dict[int, int] = {}
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        while time.monotonic() < give_up_at:
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # closed between two requests: connect again
                writer.close()
                reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
                continue
            status, length = response_status_and_length(head)
            await reader.readexactly(length)
            statuses[status] = statuses.get(status, 0) + 1
            if b"\r\nconnection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    finally:
        writer.close()
    return statuses


async def _submit_load(base_url: str, request: bytes, seconds: float, clients: int) -> SubmitLoad:
    started, cpu_at_start = time.monotonic(), time.process_time()
    per_client = await asyncio.gather(
        *(_submit_until(base_url, request, started + seconds) for _ in range(clients))
    )
    wall, cpu = time.monotonic() - started, time.process_time() - cpu_at_start
    statuses: dict[int, int] = {}
    for counts in per_client:
        for status, n in counts.items():
            statuses[status] = statuses.get(status, 0) + n
    return SubmitLoad(statuses, wall, cpu)


def _load_process(
    base_url: str, request: bytes, seconds: float, clients: int, results: Any
) -> None:
    async def warm_up_then_measure() -> tuple[SubmitLoad, SubmitLoad]:
        warm_up = await _submit_load(base_url, request, SUBMIT_WARM_UP_S, clients)
        return warm_up, await _submit_load(base_url, request, seconds, clients)

    results.send(asyncio.run(warm_up_then_measure()))


def generate_submit_load(
    base_url: str, authorization: str, seconds: float, clients: int
) -> tuple[SubmitLoad, SubmitLoad]:
    """``clients`` connections submitting for ``SUBMIT_WARM_UP_S``, then for ``seconds``, from
    a process of their own (see the module's docstring for why): the two loads."""
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    request = submit_request(base_url, authorization)
    process = context.Process(
        target=_load_process, args=(base_url, request, seconds, clients, sending), daemon=True
    )
    process.start()
    sending.close()
    try:
        if not receiving.poll(SUBMIT_WARM_UP_S + seconds + 120):
            raise RuntimeError("the load generator gave no result")
        loads: tuple[SubmitLoad, SubmitLoad] = receiving.recv()
    except EOFError:
        raise RuntimeError(f"the load generator failed (exit {process.exitcode})") from None
    finally:
        process.join(timeout=10)
    return loads


def submit_rate_run(model_dir: Path, seconds: float, clients: int) -> dict:
    running = RunningStack(
        model_dir,
        inference_workers="0",
        postprocess_workers="0",
        api_processes="2",
        api_threads="8",  # with CHATQ_API_WORKER=gthread; the default gevent worker has none
    )
    try:
        warm_up, load = generate_submit_load(
            running.stack.base_url, running.client.headers["Authorization"], seconds, clients
        )
        with broker_connection(running.settings) as connection:
            published = queue_depth(connection, INFERENCE_QUEUE)
        with session_scope(running.settings.database_url) as session:
            stored = session.scalar(select(func.count()).select_from(Job)) or 0
    finally:
        running.close()
    return {
        "clients": clients,
        "api_worker": running.settings.api_worker.value,
        "seconds": round(load.wall_s, 2),
        "accepted": load.accepted,
        "submits_per_s": round(load.accepted / load.wall_s, 1),
        "answers_by_status": {str(status): n for status, n in sorted(load.statuses.items())},
        "client_cpu_ms_per_request": round(
            1000 * load.cpu_s / max(sum(load.statuses.values()), 1), 3
        ),
        "accepted_in_warm_up": warm_up.accepted,
        "stored_jobs": stored,
        "published_messages": published,
        "all_stored_and_published": stored == published == warm_up.accepted + load.accepted,
    }


def parse_parts(raw: str) -> tuple[str, ...]:
    parts = tuple(part.strip() for part in raw.split(",") if part.strip())
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"parts are a comma-separated choice of {PARTS}")
    return parts


def print_batching(batching: list[dict], jobs: int, clients: int) -> None:
    base = batching[0]
    print(
        f"\nwhole pipeline on Postgres + RabbitMQ, {jobs} jobs, {clients} clients, "
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Settings().model_dir)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--overhead-jobs", type=int, default=40)
    parser.add_argument("--submit-seconds", type=float, default=10)
    parser.add_argument(
        "--parts",
        type=parse_parts,
        default=PARTS,
        help="which parts to run, comma-separated (default: all): " + ",".join(PARTS),
    )
    parser.add_argument(
        "--out", type=Path, help="default: bench/results/pipeline.json, or pipeline-PARTS.json"
    )
    args = parser.parse_args()
    # a run of some parts leaves the figures of a whole run where they are
    name = "pipeline" if args.parts == PARTS else "pipeline-" + "-".join(args.parts)
    out = args.out or ROOT / "bench" / "results" / f"{name}.json"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    figures: dict[str, Any] = {
        "parts": list(args.parts),
        "model_variant": os.environ.get("CHATQ_MODEL_VARIANT", "fp32"),
    }
    if "batching" in args.parts:
        size = str(args.batch_size)
        configs = [
            ("one at a time", {"max_batch_size": "1", "batching": "static", "max_wait_ms": "0"}),
            (
                "static batching",
                {"max_batch_size": size, "batching": "static", "max_wait_ms": "50"},
            ),
            ("continuous batching", {"max_batch_size": size, "batching": "continuous"}),
        ]
        batching = []
        for label, overrides in configs:
            print(f"running: {label} ...", file=sys.stderr)
            batching.append(
                batching_run(args.model_dir, label, args.clients, args.jobs, **overrides)
            )
        print_batching(batching, args.jobs, args.clients)
        base = batching[0]
        figures["batching"] = batching
        figures["speedup_jobs_per_s"] = {
            row["config"]: round(row["jobs_per_s"] / base["jobs_per_s"], 2) for row in batching
        }
    if "overhead" in args.parts:
        print("running: overhead ...", file=sys.stderr)
        overhead = overhead_run(args.model_dir, args.overhead_jobs)
        print(
            f"\noverhead (latency - inference), one client: p50 {overhead['overhead_p50_ms']} ms, "
            f"p95 {overhead['overhead_p95_ms']} ms; breakdown p50: {overhead['breakdown_p50_ms']}"
        )
        figures["overhead"] = overhead
    if "submit" in args.parts:
        print("running: submit rate ...", file=sys.stderr)
        submit = submit_rate_run(args.model_dir, args.submit_seconds, args.clients)
        print(
            f"API submit rate, {submit['clients']} clients: {submit['submits_per_s']}/s "
            f"({submit['accepted']} accepted, answers {submit['answers_by_status']}; "
            f"stored and published: {submit['all_stored_and_published']})"
        )
        figures["submit_rate"] = submit
    write_results(out, "pipeline", **figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
