"""The ``q4`` variant: every MatMul weight as 4-bit blocks (ONNX Runtime's ``MatMulNBits``).

The default model comes from a GGUF whose MatMul weights are Q4_1: blocks of 32 consecutive
input weights, each ``w = d·q + m`` with ``q`` in 0..15 (ggml sets ``m`` to the block's minimum
and ``d`` to its range / 15, so ``q`` = 0 and 15 both occur). The fp32 export holds exactly those
values, so re-encoding them as 4-bit blocks loses nothing: the blocks and their ``q`` are
recovered exactly, and the answers stay token for token those of fp32 (the build checks it, as
for every variant). A weight that is not on such a grid (a fine-tuned, merged model) is rounded
to the nearest of 16 levels between its block's minimum and maximum, and the agreement shows
what that costs.

``MatMulNBits`` dequantises ``(q − zero_point) · scale`` with an integer zero point; ggml's
minimum ``m`` is a float, and ONNX Runtime's float zero points take a slow path (3.5× slower
than fp32 here). So the minimum goes apart: ``x·W = MatMulNBits(x; q, d, zero point 0) +
blocksum(x)·M``, where ``blocksum(x) = x·S`` sums ``x`` over each block of 32 (``S`` is a 0/1
``[K, K/32]`` matrix, so any rank of ``x`` works; one per input, shared by every weight that
reads it) and ``M`` holds the minima, a matrix 32 times smaller than ``W``. The weights are the
same values; the products differ from fp32's only in the order of the sums (``accuracy_level``
1: no int8 activations).

Only float32 MatMul weights of the main graph are rewritten (not those inside ``If``/``Loop``
subgraphs); a model in which none qualifies is refused rather than passed off as 4-bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BLOCK = 32
LEVELS = 15  # 4 bits: q in 0..15
# fp32 weights: a block counts as "on its grid" when rebuilding it from (q, d, m) moves no
# weight by more than this (ggml's d and m are fp16, products land on fp32 values exactly)
EXACT_TOLERANCE = 1e-6
ACCURACY_FP32 = 1  # MatMulNBits computes in fp32 (4 would quantise the activations to int8)


@dataclass(frozen=True)
class BlockQuantized:
    """One ``[K, N]`` weight as ``MatMulNBits`` inputs, plus the block minima."""

    packed: np.ndarray  # uint8 [N, K/32, 16]: two 4-bit q per byte, the lower index low
    scales: np.ndarray  # float32 [N * K/32]
    minima: np.ndarray  # float32 [K/32, N]
    exact: bool  # every block rebuilt within EXACT_TOLERANCE


def quantize_blocks(weight: np.ndarray) -> BlockQuantized:
    """``weight`` ``[K, N]`` (MatMul's right-hand side) in blocks of 32 along K."""
    k, n = weight.shape
    if k % BLOCK:
        raise ValueError(f"K={k} is not a multiple of {BLOCK}")
    blocks = weight.astype(np.float64).T.reshape(n, k // BLOCK, BLOCK)
    low = blocks.min(axis=-1, keepdims=True)
    step = (blocks.max(axis=-1, keepdims=True) - low) / LEVELS
    step = np.where(step > 0, step, 1.0)  # a constant block: q = 0 everywhere, w = m
    q = np.clip(np.rint((blocks - low) / step), 0, LEVELS).astype(np.uint8)
    exact = bool(np.abs(q * step + low - blocks).max() <= EXACT_TOLERANCE)
    return BlockQuantized(
        packed=(q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8),
        scales=step.astype(np.float32).reshape(-1),
        minima=low.reshape(n, k // BLOCK).T.astype(np.float32).copy(),
        exact=exact,
    )


def rewrite_matmuls(model: Any) -> tuple[int, int]:
    """Replace, in place, every MatMul whose right-hand side is a 2-D initializer with K a
    multiple of 32 by the 4-bit form above. Returns (rewritten, exactly representable)."""
    import onnx
    from onnx import helper, numpy_helper

    from training.onnx_files import replace_nodes

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    nodes: list[Any] = []
    added: list[Any] = []
    rewritten_weights: set[str] = set()
    block_sums: dict[str, str] = {}  # input name → its block sums (q, k, v share one input)
    rewritten = exact = 0
    for node in graph.node:
        weight_name = node.input[1] if node.op_type == "MatMul" else ""
        init = initializers.get(weight_name)
        if (
            init is None
            or init.data_type != onnx.TensorProto.FLOAT
            or len(init.dims) != 2
            or init.dims[0] % BLOCK
        ):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(init)
        k, n = weight.shape
        blocks = quantize_blocks(weight)
        rewritten += 1
        exact += blocks.exact
        rewritten_weights.add(weight_name)
        prefix = f"q4/{rewritten}"
        x = node.input[0]
        if x not in block_sums:
            summing = np.kron(np.eye(k // BLOCK, dtype=np.float32), np.ones((BLOCK, 1), np.float32))
            added.append(numpy_helper.from_array(summing, f"{prefix}/block_summing"))
            sum_inputs = [x, f"{prefix}/block_summing"]
            nodes.append(
                helper.make_node("MatMul", sum_inputs, [f"{prefix}/block_sums"], f"{prefix}/sum")
            )
            block_sums[x] = f"{prefix}/block_sums"
        zero_points = np.zeros(n * ((k // BLOCK + 1) // 2), dtype=np.uint8)
        added += [
            numpy_helper.from_array(blocks.packed, f"{prefix}/q"),
            numpy_helper.from_array(blocks.scales, f"{prefix}/scales"),
            numpy_helper.from_array(zero_points, f"{prefix}/zero_points"),
            numpy_helper.from_array(blocks.minima, f"{prefix}/minima"),
        ]
        nodes += [
            helper.make_node(
                "MatMulNBits",
                [x, f"{prefix}/q", f"{prefix}/scales", f"{prefix}/zero_points"],
                [f"{prefix}/levels"],
                f"{prefix}/matmul_nbits",
                domain="com.microsoft",
                K=k,
                N=n,
                bits=4,
                block_size=BLOCK,
                accuracy_level=ACCURACY_FP32,
            ),
            helper.make_node(
                "MatMul", [block_sums[x], f"{prefix}/minima"], [f"{prefix}/offsets"], f"{prefix}/mm"
            ),
            helper.make_node(
                "Add", [f"{prefix}/levels", f"{prefix}/offsets"], list(node.output), f"{prefix}/add"
            ),
        ]
    if rewritten == 0:
        raise ValueError(
            "no float32 MatMul weight with a multiple of 32 inputs in the main graph: "
            "nothing to write as 4-bit blocks"
        )
    replace_nodes(model, nodes, rewritten_weights, added)
    return rewritten, exact
