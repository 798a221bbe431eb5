"""Engine benchmark: PyTorch vs ONNX Runtime fp32 vs ONNX Runtime INT8 (and fp16 if asked),
batch 1 and batch 8, the same prompts, greedy, the same number of new tokens.

Prints tokens/s medians, the ratio to PyTorch and whether the tokens were identical to
PyTorch's; writes everything (raw timings included) as JSON. Runs are interleaved (every engine
once per round) so that a noisy neighbour slows all of them alike.

    .venv/bin/python bench/engine.py [--model-dir DIR] [--new-tokens 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from results_file import write_results

from services.worker.engine import Engine, GenerationRequest
from services.worker.engine.onnx_runtime import load_onnx_engine
from services.worker.engine.pytorch import load_pytorch_engine
from shared.config import Device, Settings
from shared.messaging.schemas import GenerationParams
from shared.model_layout import ModelLayout
from training.variants import AGREEMENT_PROMPTS

ROOT = Path(__file__).resolve().parent.parent

BATCH_SIZES = (1, 8)


def requests(new_tokens: int) -> list[GenerationRequest]:
    params = GenerationParams(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    return [
        GenerationRequest(str(i), [{"role": "user", "content": prompt}], params)
        for i, prompt in enumerate(AGREEMENT_PROMPTS)
    ]


def run(engine: Engine, batch_size: int, new_tokens: int) -> tuple[float, list[tuple[int, ...]]]:
    """Seconds to answer every prompt in batches of ``batch_size``, and the tokens."""
    work = requests(new_tokens)
    tokens: list[tuple[int, ...]] = []
    started = time.perf_counter()
    for start in range(0, len(work), batch_size):
        tokens += [r.token_ids for r in engine.generate(work[start : start + batch_size])]
    return time.perf_counter() - started, tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Settings().model_dir)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: default)")
    parser.add_argument("--fp16", action="store_true", help="also run the fp16 variant")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engine.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local models only

    layout = ModelLayout(args.model_dir)
    manifest = layout.require_manifest()
    engines: dict[str, Engine] = {
        "pytorch": load_pytorch_engine(layout.pytorch_dir, Device.CPU, args.threads, manifest.name),
        "ort-fp32": load_onnx_engine(layout.onnx_dir, Device.CPU, args.threads, manifest.name),
    }
    for variant in ("int8", "fp16") if args.fp16 else ("int8",):
        if layout.variant_dir(variant).is_dir():
            engines[f"ort-{variant}"] = load_onnx_engine(
                layout.variant_dir(variant), Device.CPU, args.threads, manifest.name, variant
            )
        else:
            print(f"(no {variant} variant: `chatq model build --quantize {variant}` adds it)")

    for engine in engines.values():  # warm-up: first runs allocate and compile
        run(engine, 8, 4)
    seconds: dict[str, dict[int, list[float]]] = {n: {b: [] for b in BATCH_SIZES} for n in engines}
    tokens: dict[str, dict[int, list[tuple[int, ...]]]] = {n: {} for n in engines}
    for round_number in range(args.rounds):
        for name, engine in engines.items():
            for batch_size in BATCH_SIZES:
                elapsed, produced = run(engine, batch_size, args.new_tokens)
                seconds[name][batch_size].append(elapsed)
                tokens[name][batch_size] = produced
        print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)

    generated = len(AGREEMENT_PROMPTS) * args.new_tokens
    rows = []
    for name in engines:
        for batch_size in BATCH_SIZES:
            rate = generated / statistics.median(seconds[name][batch_size])
            reference = generated / statistics.median(seconds["pytorch"][batch_size])
            pairs = zip(tokens[name][batch_size], tokens["pytorch"][batch_size], strict=True)
            same = sum(a == b for ours, theirs in pairs for a, b in zip(ours, theirs, strict=True))
            rows.append(
                {
                    "engine": name,
                    "batch_size": batch_size,
                    "tokens_per_s": round(rate, 2),
                    "vs_pytorch": round(rate / reference, 3),
                    "identical_to_pytorch": tokens[name][batch_size]
                    == tokens["pytorch"][batch_size],
                    "token_agreement_with_pytorch": round(same / generated, 4),
                    "seconds": [round(s, 4) for s in seconds[name][batch_size]],
                }
            )

    print(f"\n{manifest.name}, {len(AGREEMENT_PROMPTS)} prompts x {args.new_tokens} new tokens, "
          f"greedy, median of {args.rounds} interleaved rounds, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'engine':10} {'batch':>5} {'tok/s':>8} {'vs PyTorch':>11} {'same tokens':>12}")
    for row in rows:
        print(
            f"{row['engine']:10} {row['batch_size']:>5} {row['tokens_per_s']:>8.1f} "
            f"{row['vs_pytorch']:>10.2f}x {row['token_agreement_with_pytorch']:>11.1%}"
        )
    write_results(
        args.out,
        "engine",
        model=manifest.name,
        graph_fused=manifest.graph_fused,
        new_tokens=args.new_tokens,
        prompts=len(AGREEMENT_PROMPTS),
        rounds=args.rounds,
        results=rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
