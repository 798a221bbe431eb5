"""Routing benchmark: what the router costs, and how fast answers that never touch the model are.

1. In the worker, in process: the router's time per job (embedding the question, intents, FAQ,
   cache look-up, retrieval, extraction) over the example shop's eval questions, p50/p95 per
   route, against a budget of 15 ms p50 on 2 cores.
2. End to end on the embedded default (`chatq up` as processes, SQLite and the embedded
   broker): FAQ, rule and cache answers, submit → completed as the client sees it
   (`POST /v1/jobs`, then `GET ?wait`), p50/p95, against a budget of 50 ms p50.

    .venv/bin/python bench/routing.py [--rounds 3]
"""

from __future__ import annotations

import os

# as the worker runs (services/worker/__main__.py): set before numpy loads
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
from results_file import write_results

from chatq.demo import free_port
from chatq.evaluation.questions import load_question_set
from chatq.knowledge_files import load_bundle
from chatq.order_service import OrderService
from chatq.stack import Stack
from services.worker.router.build import build_router
from services.worker.router.router import RouterInput
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.db.engine import dispose_engine, session_scope
from shared.db.migrate import upgrade_database
from shared.knowledge import store
from shared.messaging.schemas import ChatTurn, EngineInfo

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "examples" / "shop"

# answered without the model: FAQ (en, zh), an order look-up (rule), then the cache
END_TO_END = (
    ("faq", "How do I reset my router?"),
    ("faq", "如何重置路由器？"),
    ("rule", "Where is my order 20261234?"),
    ("rule", "帮我查一下订单20261888"),
)


# answered from the documents the first time, from the answer cache afterwards
CACHED_QUESTION = "寄到新疆要多少运费？"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
    }


def in_process(settings: Settings, orders_url: str, rounds: int) -> dict[str, Any]:
    key = create_api_key(settings.database_url, "bench-router")
    load_bundle(settings.database_url, key.tenant, SHOP, {"orders_url": orders_url})
    router, registry = build_router(settings, EngineInfo(name="-", providers=[], model="-"))
    router.cache.capacity = 0  # every job routed in full: the cache is measured end to end
    with session_scope(settings.database_url) as session:
        tenant_id = store.tenant_by_name(session, key.tenant).id
    questions = load_question_set(SHOP / "eval.yaml").questions
    tenant = registry.current({tenant_id})[tenant_id]  # indexed once, before timing
    by_route: dict[str, list[float]] = defaultdict(list)
    every: list[float] = []
    for _ in range(rounds):
        for question in questions:
            history = [
                ChatTurn(role=role, content=text)
                for turn in question.turns or []
                for role, text in (("user", turn), ("assistant", "…"))
            ]
            job = RouterInput(question.question, history, key.webhook_secret)
            started = time.perf_counter()
            decision = router.route(tenant, job)
            elapsed = (time.perf_counter() - started) * 1000
            by_route[decision.route].append(elapsed)
            every.append(elapsed)
    return {
        "all": summary(every),
        "by_route": {route: summary(values) for route, values in sorted(by_route.items())},
        "embedder": registry.embedder.name,
    }


def end_to_end(data_dir: Path, rounds: int) -> dict[str, Any]:
    env = {
        "CHATQ_DATA_DIR": str(data_dir),
        "CHATQ_DATABASE_URL": "",
        "CHATQ_BROKER_URL": "",
        "CHATQ_API_PORT": str(free_port()),
        "CHATQ_RULE_HTTP_ALLOW_PRIVATE": "true",
        "CHATQ_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    settings = Settings()
    orders = json.loads((SHOP / "orders.json").read_text(encoding="utf-8"))
    stack = Stack(settings, env)
    stack.start()
    samples: dict[str, list[float]] = defaultdict(list)
    try:
        stack.wait_ready(timeout_s=180)
        with OrderService(orders) as service:
            key = create_api_key(settings.database_url, "bench-e2e")
            load_bundle(settings.database_url, key.tenant, SHOP, {"orders_url": service.url})
            headers = {"Authorization": f"Bearer {key.key}"}
            with httpx.Client(base_url=stack.base_url, headers=headers, timeout=120) as client:
                ask(client, CACHED_QUESTION)  # indexes the tenant, and caches the answer
                for _ in range(rounds * 5):
                    for route, query in END_TO_END:
                        samples[route].append(ask(client, query, expect=route))
                    # a question answered from the documents, asked again: answered from the cache
                    samples["cache"].append(ask(client, CACHED_QUESTION, expect="cache"))
    finally:
        stack.stop()
        dispose_engine(settings.database_url)
    return {route: summary(values) for route, values in samples.items()}


def ask(client: httpx.Client, query: str, expect: str | None = None) -> float:
    started = time.perf_counter()
    job_id = client.post("/v1/jobs", json={"query": query}).json()["id"]
    job = client.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()
    elapsed = (time.perf_counter() - started) * 1000
    if job["status"] != "completed" or (expect and job["route"] != expect):
        raise RuntimeError(f"{query!r}: expected route {expect}, got {job['route']} ({job})")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "routing.json")
    args = parser.parse_args()
    os.environ.setdefault("CHATQ_LOG_LEVEL", "WARNING")
    scratch = Path(tempfile.mkdtemp(prefix="chatq-bench-routing-"))
    try:
        settings = Settings(
            data_dir=scratch / "router", database_url="", rule_http_allow_private=True
        )
        upgrade_database(settings.database_url)
        with OrderService(json.loads((SHOP / "orders.json").read_text())) as service:
            router = in_process(settings, service.url, args.rounds)
        dispose_engine(settings.database_url)
        e2e = end_to_end(scratch / "stack", args.rounds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\nrouter in the worker ({router['embedder']}), per job, 2 cores, budget 15 ms p50")
    print(f"{'route':<12} {'jobs':>6} {'p50 ms':>8} {'p95 ms':>8}")
    for route, figures in [("all", router["all"]), *router["by_route"].items()]:
        print(f"{route:<12} {figures['n']:>6} {figures['p50_ms']:>8} {figures['p95_ms']:>8}")
    print("\nend to end on the embedded default (submit → completed), budget 50 ms p50")
    print(f"{'route':<12} {'jobs':>6} {'p50 ms':>8} {'p95 ms':>8}")
    for route, figures in e2e.items():
        print(f"{route:<12} {figures['n']:>6} {figures['p50_ms']:>8} {figures['p95_ms']:>8}")
    write_results(args.out, "routing", router=router, end_to_end=e2e)


if __name__ == "__main__":
    main()
