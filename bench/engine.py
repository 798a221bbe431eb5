"""Engine benchmark: PyTorch vs ONNX Runtime fp32 vs the INT8 and Q4 variants (those built;
fp16 if asked), batch 1 and batch 8, the same prompts, greedy, the same number of new tokens;
the prefill (time to the first token) of a batch of long prompts; and ONNX Runtime's prefill of
the shop questions as the worker sends them (the default system prompt first) without and with
the prefix cache (``CHATQ_PREFIX_CACHE_MB``), with the tokens of both compared.

Every engine runs with the same number of intra-op threads (ONNX Runtime's session option and
``torch.set_num_threads``), after an untimed warm-up of every batch size. Runs are interleaved:
in each round every engine answers the same work, in an order that alternates from round to
round, and the ratio to PyTorch is taken within the round, so a noisy neighbour or a slow minute
slows both sides of a ratio alike. The table gives the median of the per-round ratios and their
spread (lowest, quartiles, highest); the JSON keeps every timing.

    .venv/bin/python bench/engine.py [--model-dir DIR] [--new-tokens 32] [--rounds 9]
        [--threads N] [--prefill-length 512] [--prefill-batch 8]
        [--parts decode,prefill,prefix]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from results_file import write_results

from services.worker.engine import Engine, GenerationRequest
from services.worker.engine.onnx_runtime import computes_last_position_only, load_onnx_engine
from services.worker.engine.pytorch import load_pytorch_engine
from shared.config import Device, Settings
from shared.messaging.schemas import GenerationParams
from shared.model_layout import ModelLayout
from training.variants import AGREEMENT_PROMPTS

ROOT = Path(__file__).resolve().parent.parent

BATCH_SIZES = (1, 8)
REFERENCE = "pytorch"


def requests(new_tokens: int) -> list[GenerationRequest]:
    params = GenerationParams(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    return [
        GenerationRequest(str(i), [{"role": "user", "content": prompt}], params)
        for i, prompt in enumerate(AGREEMENT_PROMPTS)
    ]


def long_requests(engine: Engine, length: int, batch_size: int) -> list[GenerationRequest]:
    """``batch_size`` different prompts of ``length`` tokens each (as the chat template encodes
    them), for one new token: a prefill and nothing else."""
    filler = " ".join(AGREEMENT_PROMPTS) + " "
    ids = engine.tokenizer(filler * (length // 8 + 8), add_special_tokens=False)["input_ids"]
    params = GenerationParams(max_new_tokens=1, min_new_tokens=1)
    framing = engine.count_prompt_tokens([{"role": "user", "content": ""}])
    work = []
    for row in range(batch_size):
        start = row * 7  # a different text in every row, the same length
        best: list[dict[str, str]] = []
        for size in range(length - framing, length - framing - 16, -1):
            # decoding and re-encoding can merge across the cut: take the longest that fits
            messages = [{"role": "user", "content": engine.tokenizer.decode(ids[start:][:size])}]
            if engine.count_prompt_tokens(messages) <= length:
                best = messages
                break
        work.append(GenerationRequest(f"long-{row}", best, params))
    return work


def system_prompt_requests(system_prompt: str, new_tokens: int) -> list[GenerationRequest]:
    """The shop questions as the worker sends them to the model: the system prompt first."""
    params = GenerationParams(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    return [
        GenerationRequest(
            f"sys-{i}",
            [{"role": "system", "content": system_prompt}, {"role": "user", "content": prompt}],
            params,
        )
        for i, prompt in enumerate(AGREEMENT_PROMPTS)
    ]


def run(engine: Engine, work: list[GenerationRequest], batch_size: int) -> tuple[float, list[Any]]:
    """Seconds to answer ``work`` in batches of ``batch_size``, and the answers' tokens."""
    tokens: list[tuple[int, ...]] = []
    started = time.perf_counter()
    for start in range(0, len(work), batch_size):
        tokens += [r.token_ids for r in engine.generate(work[start : start + batch_size])]
    return time.perf_counter() - started, tokens


def interleaved(
    engines: dict[str, Engine],
    rounds: int,
    measure: Callable[[Engine], tuple[float, list[Any]]],
    label: str,
) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    """Seconds per round for every engine, every engine once a round; the order alternates so
    that no engine always runs right after another one's threads went idle."""
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    tokens: dict[str, list[Any]] = {}
    names = list(engines)
    for round_number in range(rounds):
        for name in names if round_number % 2 == 0 else reversed(names):
            elapsed, tokens[name] = measure(engines[name])
            seconds[name].append(elapsed)
        print(f"{label}: round {round_number + 1}/{rounds} done", file=sys.stderr)
    return seconds, tokens


def spread(values: list[float]) -> dict[str, float]:
    """Median, quartiles and extremes (the quartiles need two values or more)."""
    low, _, high = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "q1": round(low, 3),
        "q3": round(high, 3),
        "max": round(max(values), 3),
    }


def round_ratios(seconds: dict[str, list[float]], name: str) -> list[float]:
    """Speed of ``name`` relative to PyTorch, one ratio per round (same round, same load)."""
    return [ref / ours for ref, ours in zip(seconds[REFERENCE], seconds[name], strict=True)]


def decode_benchmark(
    engines: dict[str, Engine], new_tokens: int, rounds: int
) -> list[dict[str, Any]]:
    work = requests(new_tokens)
    generated = len(work) * new_tokens
    rows = []
    for batch_size in BATCH_SIZES:
        for engine in engines.values():  # warm-up: allocations, kernel choices, this shape
            run(engine, requests(min(new_tokens, 8))[:batch_size], batch_size)
        measure = partial(run, work=work, batch_size=batch_size)
        seconds, tokens = interleaved(engines, rounds, measure, f"decode batch {batch_size}")
        for name in engines:
            pairs = zip(tokens[name], tokens[REFERENCE], strict=True)
            same = sum(a == b for ours, theirs in pairs for a, b in zip(ours, theirs, strict=True))
            ratios = round_ratios(seconds, name)
            rows.append(
                {
                    "engine": name,
                    "batch_size": batch_size,
                    "tokens_per_s": round(generated / statistics.median(seconds[name]), 2),
                    "vs_pytorch": spread(ratios),
                    "identical_to_pytorch": tokens[name] == tokens[REFERENCE],
                    "token_agreement_with_pytorch": round(same / generated, 4),
                    "seconds": [round(s, 4) for s in seconds[name]],
                }
            )
    return rows


def prefill_benchmark(
    engines: dict[str, Engine], length: int, batch_size: int, rounds: int
) -> dict[str, Any]:
    work = long_requests(next(iter(engines.values())), length, batch_size)
    lengths = [next(iter(engines.values())).count_prompt_tokens(r.messages) for r in work]
    for engine in engines.values():
        run(engine, work, batch_size)  # warm-up at this shape
    measure = partial(run, work=work, batch_size=batch_size)
    seconds, _ = interleaved(engines, rounds, measure, "prefill")
    rows = [
        {
            "engine": name,
            "median_ms": round(statistics.median(seconds[name]) * 1000, 1),
            "vs_pytorch": spread(round_ratios(seconds, name)),
            "seconds": [round(s, 4) for s in seconds[name]],
        }
        for name in engines
    ]
    return {"batch_size": batch_size, "prompt_tokens": lengths, "results": rows}


def prefix_benchmark(
    onnx_dir: Path, threads: int, name: str, new_tokens: int, rounds: int
) -> dict[str, Any]:
    """Time to the first token of each shop question alone (batch 1, one new token), the
    prefix cache off vs on (filled by the warm-up: the steady state of a worker whose tenants'
    system prompts are kept); then every answer in full, for the tokens of both."""
    off, cached = "no prefix cache", "prefix cache"
    engines: dict[str, Engine] = {
        off: load_onnx_engine(onnx_dir, Device.CPU, threads, name),
        cached: load_onnx_engine(onnx_dir, Device.CPU, threads, name, prefix_cache_mb=64),
    }
    system_prompt = Settings().system_prompt
    first_token = system_prompt_requests(system_prompt, 1)
    for engine in engines.values():
        run(engine, first_token, 1)  # warm-up; fills the cache
    seconds, _ = interleaved(
        engines, rounds, partial(run, work=first_token, batch_size=1), "prefix"
    )
    answers = {
        n: run(e, system_prompt_requests(system_prompt, new_tokens), 1)[1]
        for n, e in engines.items()
    }
    encoded = engines[off].encoded_prompt_of(first_token[0])
    return {
        "prompt_tokens": [len(engines[off].prompt_of(r)) for r in first_token],
        "shared_prefix_tokens": encoded.shared_prefix,
        "ms_per_prompt": {
            n: round(statistics.median(s) * 1000 / len(first_token), 1) for n, s in seconds.items()
        },
        "speedup": spread([a / b for a, b in zip(seconds[off], seconds[cached], strict=True)]),
        "identical_answers": sum(
            a == b for a, b in zip(answers[off], answers[cached], strict=True)
        ),
        "answers": len(first_token),
        "seconds": {n: [round(x, 4) for x in s] for n, s in seconds.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Settings().model_dir)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="intra-op threads of every engine (default: the CPUs this process may use)",
    )
    parser.add_argument("--prefill-length", type=int, default=512)
    parser.add_argument("--prefill-batch", type=int, default=8)
    parser.add_argument(
        "--parts", default="decode,prefill,prefix", help="any of decode, prefill, prefix"
    )
    parser.add_argument("--fp16", action="store_true", help="also run the fp16 variant")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engine.json")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local models only

    layout = ModelLayout(args.model_dir)
    manifest = layout.require_manifest()
    threads = args.threads
    ort_fp32 = load_onnx_engine(layout.onnx_dir, Device.CPU, threads, manifest.name)
    engines: dict[str, Engine] = {
        REFERENCE: load_pytorch_engine(layout.pytorch_dir, Device.CPU, threads, manifest.name),
        "ort-fp32": ort_fp32,
    }
    for variant in ("int8", "q4", "fp16") if args.fp16 else ("int8", "q4"):
        if layout.variant_dir(variant).is_dir():
            engines[f"ort-{variant}"] = load_onnx_engine(
                layout.variant_dir(variant), Device.CPU, threads, manifest.name, variant
            )
        else:
            print(f"(no {variant} variant: `chatq model build --quantize {variant}` adds it)")

    prefix = (
        prefix_benchmark(layout.onnx_dir, threads, manifest.name, args.new_tokens, args.rounds)
        if "prefix" in parts
        else None
    )
    decode = decode_benchmark(engines, args.new_tokens, args.rounds) if "decode" in parts else []
    prefill = (
        prefill_benchmark(engines, args.prefill_length, args.prefill_batch, args.rounds)
        if "prefill" in parts
        else None
    )

    print(
        f"\n{manifest.name}, {threads} intra-op threads per engine, {os.cpu_count()} CPUs, "
        f"{args.rounds} interleaved rounds; vs PyTorch: median of the per-round ratios "
        "[lowest, quartiles, highest]"
    )
    if decode:
        print(f"\ndecode: {len(AGREEMENT_PROMPTS)} prompts x {args.new_tokens} new tokens, greedy")
        print(f"{'engine':10} {'batch':>5} {'tok/s':>8} {'vs PyTorch':>11} {'spread':>24} same")
        for row in decode:
            ratio = row["vs_pytorch"]
            print(
                f"{row['engine']:10} {row['batch_size']:>5} {row['tokens_per_s']:>8.1f} "
                f"{ratio['median']:>10.2f}x  [{ratio['min']:.2f}, {ratio['q1']:.2f}-"
                f"{ratio['q3']:.2f}, {ratio['max']:.2f}] {row['token_agreement_with_pytorch']:.1%}"
            )
    if prefill:
        lengths = sorted(set(prefill["prompt_tokens"]))
        print(f"\nprefill: batch {prefill['batch_size']}, prompts of {lengths} tokens, 1 new token")
        print(f"{'engine':10} {'ms':>8} {'vs PyTorch':>11} {'spread':>24}")
        for row in prefill["results"]:
            ratio = row["vs_pytorch"]
            print(
                f"{row['engine']:10} {row['median_ms']:>8.1f} {ratio['median']:>10.2f}x  "
                f"[{ratio['min']:.2f}, {ratio['q1']:.2f}-{ratio['q3']:.2f}, {ratio['max']:.2f}]"
            )
    if prefix:
        speedup = prefix["speedup"]
        print(
            f"\nprefix cache: {len(prefix['prompt_tokens'])} shop questions after the default "
            f"system prompt ({min(prefix['prompt_tokens'])}-{max(prefix['prompt_tokens'])} "
            f"tokens, {prefix['shared_prefix_tokens']} shared), ONNX Runtime fp32, batch 1, "
            "time to the first token"
        )
        for label, ms in prefix["ms_per_prompt"].items():
            print(f"{label:16} {ms:>8.1f} ms")
        print(
            f"speed-up {speedup['median']:.2f}x [{speedup['min']:.2f}, {speedup['q1']:.2f}-"
            f"{speedup['q3']:.2f}, {speedup['max']:.2f}]; identical answers "
            f"({args.new_tokens} tokens): {prefix['identical_answers']}/{prefix['answers']}"
        )
    write_results(
        args.out,
        "engine",
        model=manifest.name,
        graph_fused=manifest.graph_fused,
        onnx_last_position_logits=computes_last_position_only(ort_fp32.step_model.model),
        threads=threads,
        new_tokens=args.new_tokens,
        prompts=len(AGREEMENT_PROMPTS),
        rounds=args.rounds,
        results=decode,
        prefill=prefill,
        prefix_cache=prefix,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
