"""A decode step with the KV cache copied (the engine today) against written in place.

ONNX Runtime's ``GroupQueryAttention`` returns past + the new token as a new tensor every step,
so each step reads and writes the whole cache; given one buffer with room to spare as both
past and present it appends the new token in place (``training/kv_in_place.py`` makes the
exported graph accept such a buffer). Rows: batch 1 and 16, caches of 100 and 900 tokens
(the cache's values are random: the speed does not depend on them; the logits of both ways
are compared on every step). Interleaved rounds, medians of the per-step times.

    .venv/bin/python bench/kv_cache.py [--model-dir .chatq/models/default] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from results_file import write_results

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402
import onnxruntime  # noqa: E402

from services.worker.engine.onnx_runtime import session_options  # noqa: E402
from shared.model_layout import ModelLayout  # noqa: E402
from training.kv_in_place import step_in_place, take_past_length_from_mask  # noqa: E402

STEPS = 8  # decode steps per measurement; the buffers have room for them


def cache_inputs(runner: Any) -> list[tuple[str, int, int]]:
    return [
        (item.name, item.shape[1], item.shape[3])
        for item in runner.get_inputs()
        if item.name.startswith("past_key_values.")
    ]


def measure(runner: Any, batch: int, length: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    inputs = cache_inputs(runner)
    cache = {
        name: rng.standard_normal((batch, heads, length, dim), dtype=np.float32)
        for name, heads, dim in inputs
    }
    buffers = {}
    for name, value in cache.items():
        room = np.zeros((batch, value.shape[1], length + STEPS, value.shape[3]), np.float32)
        room[:, :, :length] = value
        buffers[name] = onnxruntime.OrtValue.ortvalue_from_numpy(room)
    names = [output.name for output in runner.get_outputs()]
    copied, in_place, largest_difference = [], [], 0.0
    for step in range(STEPS):
        mask = np.ones((batch, length + step + 1), dtype=np.int64)
        feeds = {
            "input_ids": rng.integers(100, 20_000, size=(batch, 1), dtype=np.int64),
            "attention_mask": mask,
            "position_ids": np.full((batch, 1), length + step, dtype=np.int64),
        }
        started = time.perf_counter()
        outputs = dict(zip(names, runner.run(None, {**feeds, **cache}), strict=True))
        copied.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        logits = step_in_place(runner, feeds, buffers)
        in_place.append((time.perf_counter() - started) * 1000)
        largest_difference = max(
            largest_difference, float(np.abs(logits - outputs["logits"]).max())
        )
        cache = {
            name.replace("present.", "past_key_values.", 1): value
            for name, value in outputs.items()
            if name.startswith("present.")
        }
    return {
        "copied_ms": statistics.median(copied),
        "in_place_ms": statistics.median(in_place),
        "largest_logit_difference": largest_difference,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / ".chatq" / "models" / "default")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "kv_cache.json")
    args = parser.parse_args()
    source = ModelLayout(args.model_dir).onnx_dir / "model.onnx"
    if not source.is_file():
        print(f"no model at {source}: run `make model` first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        edited = source
        model = onnx.load(str(source))
        if take_past_length_from_mask(model):  # built before the edit: a copy gets it
            edited = Path(folder) / "model.onnx"
            onnx.save(model, str(edited))
        del model
        runner = onnxruntime.InferenceSession(
            str(edited), session_options(args.threads), providers=["CPUExecutionProvider"]
        )
        shapes = [(1, 100), (1, 900), (16, 100), (16, 900)]
        runs: dict[tuple[int, int], list[dict[str, Any]]] = {shape: [] for shape in shapes}
        measure(runner, 1, 16, seed=0)  # warm-up
        for round_number in range(args.rounds):
            for batch, length in shapes:
                runs[(batch, length)].append(measure(runner, batch, length, seed=round_number))
    rows = []
    print(f"\n{'batch':>5} {'cache':>6} {'copied ms':>10} {'in place ms':>12} {'ratio':>7}")
    for (batch, length), measured in runs.items():
        copied = statistics.median(m["copied_ms"] for m in measured)
        in_place = statistics.median(m["in_place_ms"] for m in measured)
        ratios = [m["copied_ms"] / m["in_place_ms"] for m in measured]
        rows.append(
            {
                "batch": batch,
                "cache_tokens": length,
                "copied_ms": round(copied, 2),
                "in_place_ms": round(in_place, 2),
                "ratio_median": round(statistics.median(ratios), 2),
                "ratios": [round(r, 2) for r in ratios],
                "largest_logit_difference": max(m["largest_logit_difference"] for m in measured),
            }
        )
        print(
            f"{batch:>5} {length:>6} {copied:>10.1f} {in_place:>12.1f} "
            f"{statistics.median(ratios):>6.2f}x  [{min(ratios):.2f}-{max(ratios):.2f}]"
        )
    write_results(
        args.out, "kv_cache", model=str(args.model_dir), rounds=args.rounds, steps=STEPS, rows=rows
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
