"""Serving benchmark: does the API still answer ``/healthz`` and take a submit while it is attacked?

Attacks (chatq/serving_probe.py), each on a fresh API-only stack (no workers, so a job stays
queued and every long-poll holds its whole wait):
- ``long-polls``: 50 ``GET /v1/jobs/{id}?wait=30`` held open at once;
- ``slowloris``: 40 connections trickling one header byte every 0.5 s (no key needed);
- ``both`` at once; ``quiet`` is the baseline.

For each gunicorn worker (``CHATQ_API_WORKER``: gthread, the old default, and gevent) and
backend, the table gives ``/healthz`` latency (p50 and worst of 5, one after another) and a
submit's (p50 and worst of 5); a request that gets no answer within the timeout is ``timeout``.

    .venv/bin/python bench/serving.py [--backend embedded|servers|both] [--worker gevent ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from results_file import write_results

from chatq.demo import free_port
from chatq.namespaces import server_namespace
from chatq.serving_probe import LongPollFlood, Slowloris
from chatq.stack import Stack
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.db.engine import dispose_engine

ROOT = Path(__file__).resolve().parent.parent

LONG_POLLS = 50
LONG_POLL_KEYS = 10  # of one tenant, 5 waits each: under CHATQ_MAX_OPEN_WAITS_PER_KEY
WAIT_S = 30
SLOWLORIS_CONNECTIONS = 40
HEALTH_SAMPLES = 5
SUBMIT_SAMPLES = 5
REQUEST_TIMEOUT_S = 30.0
SCENARIOS = ("quiet", "long-polls", "slowloris", "both")


def timed(call: Any) -> float | None:
    """Milliseconds the call took, or None when it got no answer in time."""
    started = time.perf_counter()
    try:
        response = call()
    except httpx.TimeoutException:
        return None
    if response.status_code >= 300:
        raise RuntimeError(f"unexpected answer {response.status_code}: {response.text[:200]}")
    return (time.perf_counter() - started) * 1000


def samples(call: Any, count: int) -> list[float | None]:
    taken: list[float | None] = []
    for _ in range(count):
        taken.append(timed(call))
        if taken[-1] is None:
            break  # the rest would queue behind it too
    return taken


def summary(values: list[float | None]) -> dict[str, Any]:
    answered = [v for v in values if v is not None]
    return {
        "samples": len(values),
        "timeouts": len(values) - len(answered),
        "p50_ms": round(statistics.median(answered), 1) if answered else None,
        "max_ms": None if len(answered) < len(values) else round(max(answered), 1),
    }


def run_scenario(backend: str, worker: str, scenario: str) -> dict[str, Any]:
    with ExitStack() as cleanup:
        env = {
            "CHATQ_API_PORT": str(free_port()),
            "CHATQ_API_WORKER": worker,
            "CHATQ_INFERENCE_WORKERS": "0",
            "CHATQ_POSTPROCESS_WORKERS": "0",
            "CHATQ_WEBHOOK_DELIVERY_WORKERS": "0",
            "CHATQ_RATE_LIMIT_PER_S": "0",  # serving is measured here, not the rate limiter
            "CHATQ_LOG_LEVEL": "ERROR",
            "CHATQ_DATA_DIR": cleanup.enter_context(tempfile.TemporaryDirectory()),
            "CHATQ_DATABASE_URL": "",
            "CHATQ_BROKER_URL": "",
        }
        if backend == "servers":
            names = cleanup.enter_context(server_namespace())
            env |= {"CHATQ_DATABASE_URL": names.database_url, "CHATQ_BROKER_URL": names.broker_url}
        settings = Settings(**{k.removeprefix("CHATQ_").lower(): v for k, v in env.items()})
        cleanup.callback(dispose_engine, settings.database_url)
        stack = Stack(settings, env)
        cleanup.callback(stack.stop)
        stack.start()
        stack.wait_ready(timeout_s=120)
        first = create_api_key(settings.database_url, "bench")
        keys = [first.key] + [
            create_api_key(settings.database_url, f"bench-{i}", tenant=first.tenant).key
            for i in range(LONG_POLL_KEYS)
        ]
        client = cleanup.enter_context(
            httpx.Client(
                base_url=stack.base_url,
                headers={"Authorization": f"Bearer {keys[0]}"},
                timeout=REQUEST_TIMEOUT_S,
            )
        )
        job_id = client.post("/v1/jobs", json={"query": "never answered"}).json()["id"]
        host, port = settings.api_host, settings.api_port
        flood = None
        if scenario in ("long-polls", "both"):
            flood = cleanup.enter_context(
                LongPollFlood(host, port, job_id, keys[1:], LONG_POLLS // LONG_POLL_KEYS, WAIT_S)
            )
        if scenario in ("slowloris", "both"):
            cleanup.enter_context(Slowloris(host, port, SLOWLORIS_CONNECTIONS))
        health = samples(lambda: client.get("/healthz"), HEALTH_SAMPLES)
        submit = samples(lambda: client.post("/v1/jobs", json={"query": "hi"}), SUBMIT_SAMPLES)
        return {
            "backend": backend,
            "worker": worker,
            "scenario": scenario,
            "long_polls_still_held": flood.still_waiting() if flood else 0,
            "healthz": summary(health),
            "submit": summary(submit),
        }


def cell(figures: dict[str, Any]) -> str:
    if figures["timeouts"]:
        return f"timeout ({REQUEST_TIMEOUT_S:g} s)"
    return f"{figures['p50_ms']:.1f} / {figures['max_ms']:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("embedded", "servers", "both"), default="both")
    parser.add_argument("--worker", action="append", choices=("gthread", "gevent"))
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serving.json")
    args = parser.parse_args()
    backends = ("embedded", "servers") if args.backend == "both" else (args.backend,)
    rows = []
    print(f"{'backend':9} {'worker':8} {'attack':11} {'healthz p50/max ms':>22} "
          f"{'submit p50/max ms':>22} {'waits held':>10}")  # fmt: skip
    for backend in backends:
        for worker in args.worker or ("gthread", "gevent"):
            for scenario in args.scenario or SCENARIOS:
                row = run_scenario(backend, worker, scenario)
                rows.append(row)
                print(
                    f"{backend:9} {worker:8} {scenario:11} {cell(row['healthz']):>22} "
                    f"{cell(row['submit']):>22} {row['long_polls_still_held']:>10}",
                    flush=True,
                )
    write_results(
        args.out,
        "serving",
        long_polls=LONG_POLLS,
        wait_s=WAIT_S,
        slowloris_connections=SLOWLORIS_CONNECTIONS,
        request_timeout_s=REQUEST_TIMEOUT_S,
        rows=rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
