"""INT8 recipes for the default model, side by side: how often each gives fp32's greedy tokens,
and how fast it decodes against ONNX Runtime fp32 at batch 1 and 8.

Every recipe starts from the built model's fp32 graph (fused, as the worker runs it) and is
written to ``.chatq/bench/quantization/<recipe>/``:

- ``dynamic``: ONNX Runtime's ``quantize_dynamic``, per-channel int8 weights, one uint8 scale
  per activation tensor computed at run time, ``lm_head`` fp32 (the ``int8`` variant before
  session 13).
- ``dynamic-7bit``: the same with ``reduce_range`` (7-bit weights). Without VNNI, x86 sums
  u8 x s8 products in pairs into int16 (AVX2's ``vpmaddubsw``), which saturates with 8-bit
  weights; ONNX Runtime recommends 7 bits there.
- ``dynamic-mlp-in``: 7-bit dynamic on the MLP's gate and up projections only (their inputs
  come out of an RMSNorm and have few outliers); attention, the down projection and
  ``lm_head`` stay fp32.
- ``smoothquant``: SmoothQuant (Xiao et al., 2023): each MatMul input's per-channel range,
  calibrated on the shop's FAQ questions and answers after the default system prompt, is
  moved into the weight (``x / s`` by a Mul before the MatMul, ``W * s`` row-wise, with
  ``s = max|x|^0.5 / max|W|^0.5``), then 7-bit dynamic.
- ``blocks-weights-only``: 8-bit blocks of 32 (``MatMulNBits``, ``accuracy_level`` 1): the
  weights rounded, arithmetic in fp32. What rounding the weights alone costs.
- ``blocks-8bit``: the same blocks with the activations quantised per block of 32 at run time
  (``accuracy_level`` 4), ``lm_head`` fp32: the ``int8`` variant of sessions 13-17.
- ``blocks-8bit-lm-head``: the same with ``lm_head`` in blocks as well: the ``int8`` variant
  (``training/block_q8.py``).
- ``q4-int8``: the ``q4`` variant's 4-bit blocks (the default model's own weights, exactly)
  with int8 activations (``accuracy_level`` 4), ``lm_head`` as 8-bit blocks.

Token agreement is the build's measure (8 prompts x 32 greedy new tokens, position by
position against fp32, so one early flip costs the rest of the answer). Speed is interleaved:
every round runs fp32 and each recipe on the same work in alternating order, and the ratio is
taken within the round; the table gives the median and range of the rounds' ratios.

    .venv/bin/python bench/quantization.py [--model-dir DIR] [--rounds 3] [--recipes a,b]
        [--batch-sizes 1,8] [--rebuild]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from engine import requests, run  # bench/engine.py: the same prompts, run the same way
from results_file import write_results
from tqdm import tqdm

from services.worker.engine import Engine
from services.worker.engine.onnx_runtime import load_onnx_engine
from shared.config import Device, Settings
from shared.model_layout import ModelLayout
from training.variants import (
    AGREEMENT_NEW_TOKENS,
    ONNX_FILE,
    Quantization,
    lm_head_nodes,
    quantize,
)
from training.variants import agreement as token_agreement

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".chatq" / "bench" / "quantization"
SHOP_FAQ = ROOT / "examples" / "shop" / "faq.yaml"
SMOOTHING_ALPHA = 0.5
MLP_INPUT_PROJECTIONS = ("gate_proj", "up_proj")


# --- the recipes ---------------------------------------------------------------------------


def projection_nodes(model: Any) -> list[Any]:
    """MatMuls with a weight initializer, the output projection excepted."""
    weights = {init.name for init in model.graph.initializer}
    keep = set(lm_head_nodes(model))
    return [
        node
        for node in model.graph.node
        if node.op_type == "MatMul" and node.input[1] in weights and node.name not in keep
    ]


def quantize_dynamically(
    source: Path, target: Path, reduce_range: bool, only: tuple[str, ...] = ()
) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source / ONNX_FILE))
    nodes = [n.name for n in projection_nodes(model) if not only or any(o in n.name for o in only)]
    target.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(
        str(source / ONNX_FILE),
        str(target / ONNX_FILE),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=reduce_range,
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=nodes,
        # shape inference cannot see through the fused contrib kernels
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def calibration_prompts(tokenizer: Any) -> list[str]:
    """The shop's FAQ questions and answers as customer turns after the default system prompt."""
    import yaml

    entries = yaml.safe_load(SHOP_FAQ.read_text(encoding="utf-8"))
    system_prompt = Settings().system_prompt
    texts = [entry["question"] for entry in entries] + [entry["answer"] for entry in entries]
    return [
        tokenizer.apply_chat_template(
            [{"role": "system", "content": system_prompt}, {"role": "user", "content": text}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for text in texts
    ]


def input_ranges(source: Path, prompts: list[str], tokenizer: Any) -> dict[str, np.ndarray]:
    """Each projection input's largest magnitude per channel over the prompts' prefills."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(source / ONNX_FILE))
    inputs = sorted({node.input[0] for node in projection_nodes(model)})
    for name in inputs:
        model.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = [output.name for output in session.get_outputs()]
    ranges: dict[str, np.ndarray] = {}
    for prompt in tqdm(prompts, desc="calibrating", unit="prompt", file=sys.stderr):
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="np")["input_ids"]
        feed: dict[str, np.ndarray] = {
            "input_ids": ids.astype(np.int64),
            "attention_mask": np.ones_like(ids, dtype=np.int64),
            "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None],
        }
        for spec in session.get_inputs():
            if spec.name.startswith("past_key_values"):
                heads, head_size = spec.shape[1], spec.shape[3]
                feed[spec.name] = np.zeros((1, heads, 0, head_size), np.float32)
        values = dict(zip(outputs, session.run(None, feed), strict=True))
        for name in inputs:
            peak = np.abs(values[name]).reshape(-1, values[name].shape[-1]).max(axis=0)
            ranges[name] = np.maximum(ranges[name], peak) if name in ranges else peak
    return ranges


def smooth(model: Any, ranges: dict[str, np.ndarray], alpha: float) -> None:
    """SmoothQuant's scaling, in place: per projection input, ``x / s`` (one Mul, shared by
    the projections that read it) and every reading weight ``W * s`` row-wise; the fp32
    products are unchanged up to rounding."""
    from onnx import helper, numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in projection_nodes(model):
        readers.setdefault(node.input[0], []).append(node)
    for name, nodes in readers.items():
        weights = [numpy_helper.to_array(initializers[node.input[1]]) for node in nodes]
        weight_range = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        scale = np.maximum(ranges[name], 1e-5) ** alpha / np.maximum(weight_range, 1e-5) ** (
            1 - alpha
        )
        scale = np.clip(scale, 1e-2, 1e3).astype(np.float32)
        for node, weight in zip(nodes, weights, strict=True):
            initializers[node.input[1]].CopyFrom(
                numpy_helper.from_array(weight * scale[:, None], node.input[1])
            )
            node.input[0] = f"{name}/smoothed"
        model.graph.initializer.append(numpy_helper.from_array(1 / scale, f"{name}/smoothing"))
        position = min(list(model.graph.node).index(node) for node in nodes)
        model.graph.node.insert(
            position,
            helper.make_node(
                "Mul", [name, f"{name}/smoothing"], [f"{name}/smoothed"], f"{name}/smooth"
            ),
        )


def build_smoothquant(source: Path, target: Path, tokenizer: Any) -> None:
    import onnx

    model = onnx.load(str(source / ONNX_FILE))
    smooth(model, input_ranges(source, calibration_prompts(tokenizer), tokenizer), SMOOTHING_ALPHA)
    smoothed = target.parent / f"{target.name}-fp32"
    smoothed.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(smoothed / ONNX_FILE))
    quantize_dynamically(smoothed, target, reduce_range=True)
    shutil.rmtree(smoothed)


def build_blocks(source: Path, target: Path, accuracy_level: int) -> None:
    import onnx

    from training.block_q8 import rewrite_matmuls

    model = onnx.load(str(source / ONNX_FILE))
    rewrite_matmuls(model, keep=set(lm_head_nodes(model)), accuracy_level=accuracy_level)
    target.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(target / ONNX_FILE))


def build_q4_int8(source: Path, target: Path) -> None:
    import onnx
    from onnx import helper

    from training import block_q4, block_q8

    model = onnx.load(str(source / ONNX_FILE))
    block_q4.rewrite_matmuls(model)
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            for attribute in node.attribute:
                if attribute.name == "accuracy_level":
                    attribute.CopyFrom(helper.make_attribute("accuracy_level", 4))
    heads = set(lm_head_nodes(model))
    block_q8.own_transposed_weights(model, heads)
    others = {node.name for node in model.graph.node if node.name not in heads}
    block_q8.rewrite_matmuls(model, keep=others, accuracy_level=4)
    target.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(target / ONNX_FILE))


def recipes(tokenizer: Any) -> dict[str, Callable[[Path, Path], None]]:
    return {
        "dynamic": lambda s, t: quantize_dynamically(s, t, reduce_range=False),
        "dynamic-7bit": lambda s, t: quantize_dynamically(s, t, reduce_range=True),
        "dynamic-mlp-in": lambda s, t: quantize_dynamically(
            s, t, reduce_range=True, only=MLP_INPUT_PROJECTIONS
        ),
        "smoothquant": lambda s, t: build_smoothquant(s, t, tokenizer),
        "blocks-weights-only": lambda s, t: build_blocks(s, t, accuracy_level=1),
        "blocks-8bit": lambda s, t: build_blocks(s, t, accuracy_level=4),
        # what `chatq model build` makes the int8 variant with
        "blocks-8bit-lm-head": lambda s, t: quantize(s, t, Quantization.INT8),
        "q4-int8": build_q4_int8,
    }


def build(name: str, recipe: Callable[[Path, Path], None], source: Path, rebuild: bool) -> Path:
    """The recipe's model folder (the fp32 folder's config and tokenizer files beside it)."""
    target = WORK / name
    if (target / ONNX_FILE).is_file() and not rebuild:
        return target
    shutil.rmtree(target, ignore_errors=True)
    recipe(source, target)
    for path in source.iterdir():
        if path.is_file() and not path.name.startswith(ONNX_FILE):
            shutil.copy2(path, target / path.name)
    return target


# --- the measurements ----------------------------------------------------------------------


def speed_ratios(
    engines: dict[str, Engine], batch_size: int, rounds: int
) -> dict[str, list[float]]:
    """Per recipe, fp32's seconds / the recipe's, one ratio per interleaved round."""
    work = requests(AGREEMENT_NEW_TOKENS)
    for engine in engines.values():
        run(engine, work[:batch_size], batch_size)  # warm-up at this shape
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    names = list(engines)
    for number in tqdm(range(rounds), desc=f"batch {batch_size}", unit="round", file=sys.stderr):
        for name in names if number % 2 == 0 else reversed(names):
            seconds[name].append(run(engines[name], work, batch_size)[0])
    return {
        name: [a / b for a, b in zip(seconds["fp32"], seconds[name], strict=True)]
        for name in names
        if name != "fp32"
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Settings().model_dir)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--recipes", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--rebuild", action="store_true", help="rebuild every recipe's model")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "quantization.json"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    layout = ModelLayout(args.model_dir)
    manifest = layout.require_manifest()
    tokenizer = AutoTokenizer.from_pretrained(layout.onnx_dir)
    available = recipes(tokenizer)
    chosen = [r for r in args.recipes.split(",") if r] or list(available)
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {sorted(available)}")

    folders = {"fp32": layout.onnx_dir}
    for name in tqdm(chosen, desc="building recipes", unit="recipe", file=sys.stderr):
        folders[name] = build(name, available[name], layout.onnx_dir, args.rebuild)
    engines: dict[str, Engine] = {
        name: load_onnx_engine(folder, Device.CPU, args.threads, manifest.name, name)
        for name, folder in folders.items()
    }
    work = requests(AGREEMENT_NEW_TOKENS)
    tokens = {name: run(engine, work, len(work))[1] for name, engine in engines.items()}
    rows: dict[str, dict[str, Any]] = {
        name: {"recipe": name, **token_agreement(tokens["fp32"], tokens[name]).model_dump()}
        for name in chosen
    }
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    for batch_size in batch_sizes:
        for name, ratios in speed_ratios(engines, batch_size, args.rounds).items():
            rows[name][f"speed_batch_{batch_size}"] = {
                "median": round(statistics.median(ratios), 3),
                "min": round(min(ratios), 3),
                "max": round(max(ratios), 3),
                "ratios": [round(r, 4) for r in ratios],
            }

    print(
        f"\n{manifest.name}: INT8 recipes against ONNX Runtime fp32, {args.threads} threads, "
        f"{args.rounds} interleaved rounds; tokens: {len(work)} prompts x "
        f"{AGREEMENT_NEW_TOKENS} greedy new tokens"
    )
    header = "".join(f" {'speed b' + str(b):>20}" for b in batch_sizes)
    print(f"{'recipe':20} {'tokens as fp32':>15} {'identical':>10}{header}")
    for row in rows.values():
        speeds = "".join(
            f" {s['median']:>8.2f}x [{s['min']:.2f}-{s['max']:.2f}]"
            for b in batch_sizes
            if (s := row[f"speed_batch_{b}"])
        )
        print(
            f"{row['recipe']:20} {row['token_agreement']:>15.1%} "
            f"{row['identical_sequences']:>6}/{row['prompts']}{speeds}"
        )
    write_results(
        args.out,
        "quantization",
        model=manifest.name,
        threads=args.threads,
        rounds=args.rounds,
        prompts=len(work),
        new_tokens=AGREEMENT_NEW_TOKENS,
        results=list(rows.values()),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
