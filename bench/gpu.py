"""GPU benchmark: PyTorch eager vs ONNX Runtime CUDA (IO binding, chatq's decode loop), fp16,
on a realistically sized model with random weights (weights do not matter for speed), at
batch 1/8/32; decode tokens/s set against the memory-bandwidth bound (weight bytes ÷ bandwidth:
every decode step reads every weight once).

Before the speed runs, a batch of unequal prompt and answer lengths, with requests joining while
it runs, goes through ONNX Runtime with IO binding: sequences leave (``DecodeBatch.filter``) and
join (``concatenate``) while the KV cache stays on the GPU. Every answer must get its length (the
script exits 1 if not); its agreement with the tokens it gets alone is reported.

Run by ``bench/gpu.sh`` on the GPU machine. ``--device cpu --preset tiny`` checks the script
itself on a CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from results_file import write_results

from services.worker.engine import Engine, GenerationRequest, GenerationResult
from services.worker.engine.onnx_runtime import (
    OnnxRuntimeEngine,
    computes_last_position_only,
    load_onnx_engine,
)
from services.worker.engine.pytorch import load_pytorch_engine
from shared.config import Device
from shared.messaging.schemas import GenerationParams
from training.prefill_logits import UnsupportedGraphError, keep_last_position_logits
from training.random_model import PRESETS, build_random_model

H200_BANDWIDTH_BYTES_PER_S = 4.8e12  # HBM3e, NVIDIA's datasheet


def requests(batch_size: int, new_tokens: int) -> list[GenerationRequest]:
    params = GenerationParams(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    return [
        GenerationRequest(str(i), [{"role": "user", "content": f"Where is order {i}?"}], params)
        for i in range(batch_size)
    ]


def timed(engine: Engine, batch_size: int, new_tokens: int, repeats: int) -> float:
    """Median seconds to generate ``new_tokens`` for a batch."""
    work = requests(batch_size, new_tokens)
    engine.generate(work)  # warm: allocations, kernel selection
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        engine.generate(work)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def decode_rate(engine: Engine, batch_size: int, new_tokens: int, repeats: int) -> float:
    """Decode tokens/s: the difference between N and 1 new tokens removes the prefill."""
    full = timed(engine, batch_size, new_tokens, repeats)
    prefill = timed(engine, batch_size, 1, repeats)
    return batch_size * (new_tokens - 1) / max(full - prefill, 1e-9)


def unequal_lengths(engine: OnnxRuntimeEngine, batch_size: int) -> dict[str, Any]:
    """A batch whose prompts and answers all differ in length, half of it joining after three
    steps: finished sequences leave one by one (``filter``) and the late ones join
    (``concatenate``), on the device that holds the KV cache."""

    def ask(i: int) -> GenerationRequest:
        length = 4 + 3 * i  # forced (min = max): a sequence leaves at every few steps
        params = GenerationParams(max_new_tokens=length, min_new_tokens=length)
        question = f"Where is order {i}? " + "It was due last week. " * (i % 5)
        return GenerationRequest(f"u{i}", [{"role": "user", "content": question}], params)

    work = [ask(i) for i in range(batch_size)]
    first = max(1, batch_size // 2)
    results: dict[str, GenerationResult] = {}

    def collect(finished: list[GenerationResult]) -> None:
        results.update((r.request_id, r) for r in finished)

    try:
        collect(engine.add(work[:first]))
        for _ in range(3):
            collect(engine.step())
        collect(engine.add(work[first:]))
        while engine.active:
            collect(engine.step())
    except Exception as error:  # the failure this check is for: report it, keep benchmarking
        engine.abort()
        return {"batch_size": batch_size, "passed": False, "error": repr(error)[:500]}
    wrong_length = [
        r.request_id
        for r in work
        if results[r.request_id].error is not None
        or results[r.request_id].completion_tokens != r.params.max_new_tokens
    ]
    # alone, one at a time, as a reference: a row mix-up changes whole answers, while fp16
    # rounding in another batch shape may change a late token or two (reported, not failed)
    compared = work[:8]
    same = total = 0
    for request in compared:
        alone = engine.generate([request])[0].token_ids
        batched = results[request.request_id].token_ids
        same += sum(a == b for a, b in zip(alone, batched, strict=True))
        total += len(alone)
    return {
        "batch_size": batch_size,
        "passed": not wrong_length,
        "wrong_length": wrong_length,
        "token_agreement_with_alone": round(same / total, 4),
        "compared_alone": len(compared),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="qwen2-0.5b")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bandwidth", type=float, default=H200_BANDWIDTH_BYTES_PER_S)
    parser.add_argument("--out", type=Path, default=Path("bench/results/gpu.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from optimum.exporters.onnx import main_export

    device = Device(args.device)
    half = device is Device.CUDA
    work = Path(tempfile.mkdtemp(prefix="chatq-gpu-bench-"))
    started = time.perf_counter()
    source = build_random_model(work / "pytorch", args.preset)
    main_export(
        source,
        work / "onnx",
        task="text-generation-with-past",
        library_name="transformers",
        device=args.device,
        dtype="fp16" if half else None,
        do_validation=False,
    )
    try:  # the production graph computes the prefill's last position only
        keep_last_position_logits(work / "onnx" / "model.onnx")
    except UnsupportedGraphError as error:
        print(f"prefill logits not sliced: {error}", file=sys.stderr)
    print(f"model built and exported in {time.perf_counter() - started:.0f} s", file=sys.stderr)

    # IO binding on the CPU too (the --device cpu smoke test): the path the GPU takes
    ort = load_onnx_engine(work / "onnx", device, 0, args.preset, use_io_binding=True)
    engines: dict[str, Engine] = {
        "pytorch-eager": load_pytorch_engine(
            source, device, 0, args.preset, dtype=torch.float16 if half else torch.float32
        ),
        "ort-iobinding": ort,
    }
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    checks = [unequal_lengths(ort, b) for b in sorted({max(2, b) for b in batch_sizes})]
    for check in checks:
        print(f"unequal lengths, batch {check['batch_size']}: {check}", file=sys.stderr)
    parameters = sum(p.numel() for p in engines["pytorch-eager"].model.parameters())
    weight_bytes = parameters * (2 if half else 4)
    bound_per_step = args.bandwidth / weight_bytes  # decode steps/s if weights were all it read

    rows = []
    for batch_size in batch_sizes:
        for name, engine in engines.items():
            rate = decode_rate(engine, batch_size, args.new_tokens, args.repeats)
            rows.append(
                {
                    "engine": name,
                    "batch_size": batch_size,
                    "decode_tokens_per_s": round(rate, 1),
                    "bandwidth_bound_tokens_per_s": round(bound_per_step * batch_size, 1),
                    "share_of_bound": round(rate / (bound_per_step * batch_size), 3),
                }
            )
            print(f"{name} batch {batch_size}: {rate:.1f} tok/s", file=sys.stderr)

    providers = engines["ort-iobinding"].info.providers
    precision = "fp16" if half else "fp32"
    print(
        f"\n{args.preset} ({parameters / 1e6:.0f}M parameters, {weight_bytes / 1e9:.2f} GB of "
        f"{precision} weights) on {args.device}, ORT providers {providers}"
    )
    for check in checks:
        verdict = "passed" if check["passed"] else f"FAILED {check}"
        print(f"unequal lengths with joins, batch {check['batch_size']}: {verdict}")
    header = ("engine", "batch", "decode tok/s", "bound", "of bound", "vs torch")
    print("{:15} {:>5} {:>13} {:>9} {:>9} {:>9}".format(*header))
    torch_rates = {
        r["batch_size"]: r["decode_tokens_per_s"] for r in rows if r["engine"] == "pytorch-eager"
    }
    for row in rows:
        ratio = row["decode_tokens_per_s"] / torch_rates[row["batch_size"]]
        print(
            f"{row['engine']:15} {row['batch_size']:>5} {row['decode_tokens_per_s']:>13.1f} "
            f"{row['bandwidth_bound_tokens_per_s']:>9.0f} {row['share_of_bound']:>8.1%} "
            f"{ratio:>8.2f}x"
        )
    write_results(
        args.out,
        "gpu",
        device=args.device,
        gpu=torch.cuda.get_device_name() if half else None,
        preset=args.preset,
        parameters=parameters,
        weight_bytes=weight_bytes,
        bandwidth_bytes_per_s=args.bandwidth,
        new_tokens=args.new_tokens,
        ort_providers=providers,
        ort_last_position_logits=computes_last_position_only(ort.step_model.model),
        unequal_lengths=checks,
        results=rows,
    )
    return 0 if all(check["passed"] for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
