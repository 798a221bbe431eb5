"""The ``int8`` variant: MatMul weights as 8-bit blocks with int8 activations per block
(ONNX Runtime's ``MatMulNBits``, ``bits=8``, ``accuracy_level`` 4).

Each block of 32 consecutive input weights of one output keeps its own scale (its largest
magnitude / 127, symmetric: zero point 128), and ``accuracy_level`` 4 has ONNX Runtime quantise
the activations to int8 per block of 32 as well, at run time. Dynamic quantisation
(``quantize_dynamic``) gives each activation tensor one scale: this model's MLP down-projection
inputs reach 2,000-3,000 in two layers where their median channel is about 1, so one scale
leaves most channels a level or two, and the greedy tokens change from the first one (1-10 %
agreement with fp32 on the build's prompts, `bench/quantization.py`). Per block, an outlier
only coarsens its own 32 values.

The output projection (``lm_head``) is rewritten too. It is the model's largest weight (49,152 x
576, a fifth of every decode step's arithmetic at batch 1) and, tied to the embedding, the
export reads it through a Transpose of the embedding table: ``own_transposed_weights`` gives it
a weight of its own to rewrite, and the embedding's lookup keeps the fp32 table. Measured on an
AVX-512 VNNI CPU (``bench/quantization.py``, batch 1): with ``lm_head`` fp32, 1.55x fp32's
speed; with it in blocks, 1.77-1.80x. The default model's embedding comes from the GGUF's 8-bit
blocks of 32 (ggml's Q8_0: one scale per block, its largest magnitude / 127), which these blocks
rebuild exactly; what changes tokens is the activations' int8 rounding.

Only float32 MatMul weights of the main graph with a multiple of 32 inputs are rewritten; a
model in which none qualifies is refused.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

BLOCK = 32
ZERO_POINT = 128  # symmetric: q - 128 in -127..127
ACCURACY_INT8 = 4  # MatMulNBits: activations quantised to int8 per block, int8 products


@dataclass(frozen=True)
class Block8:
    q: np.ndarray  # uint8 [N, K/32, 32]
    scales: np.ndarray  # float32 [N * K/32]


def quantize_blocks(weight: np.ndarray) -> Block8:
    """``weight`` ``[K, N]`` as 8-bit symmetric blocks of 32 along K, in MatMulNBits' layout."""
    k, n = weight.shape
    blocks = weight.T.reshape(n, k // BLOCK, BLOCK).astype(np.float32)
    scale = np.abs(blocks).max(axis=-1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0  # an all-zero block: any scale rebuilds zeros
    q = np.clip(np.rint(blocks / scale), -127, 127) + ZERO_POINT
    return Block8(q=q.astype(np.uint8), scales=scale.reshape(-1).astype(np.float32))


def own_transposed_weights(model: Any, nodes: Collection[str]) -> int:
    """Give each MatMul named in ``nodes`` whose weight is a Transpose of an initializer (a
    tied embedding read as the output projection) that weight as an initializer of its own,
    transposed once here instead of at every session start; the Transpose goes once nothing
    else reads it. Returns how many weights were made."""
    from onnx import numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    transposes = {
        node.output[0]: node
        for node in graph.node
        if node.op_type == "Transpose" and node.input[0] in initializers
    }
    made: dict[str, str] = {}  # a Transpose's output -> its weight's name (made once)
    for node in graph.node:
        transpose = transposes.get(node.input[1]) if node.op_type == "MatMul" else None
        if node.name not in nodes or transpose is None:
            continue
        if transpose.output[0] not in made:
            weight = numpy_helper.to_array(initializers[transpose.input[0]])
            perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
            own_name = made[transpose.output[0]] = f"{transpose.output[0]}/own"
            graph.initializer.append(
                numpy_helper.from_array(np.ascontiguousarray(np.transpose(weight, perm)), own_name)
            )
        node.input[1] = made[transpose.output[0]]
    still_read = {name for node in graph.node for name in node.input}
    for output, transpose in transposes.items():
        if output not in still_read and output not in {o.name for o in graph.output}:
            graph.node.remove(transpose)
    return len(made)


def rewrite_matmuls(
    model: Any, keep: Collection[str] = (), accuracy_level: int = ACCURACY_INT8
) -> int:
    """Replace, in place, every MatMul whose right-hand side is a 2-D float32 initializer with
    K a multiple of 32 (except the nodes named in ``keep``) by MatMulNBits on 8-bit blocks
    (``accuracy_level`` 1 computes in fp32: the benchmark's weights-only comparison).
    Returns how many were rewritten."""
    import onnx
    from onnx import helper, numpy_helper

    from training.onnx_files import CONTRIB_DOMAIN, replace_nodes

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    nodes: list[Any] = []
    added: list[Any] = []
    rewritten_weights: set[str] = set()
    rewritten = 0
    for node in graph.node:
        init = initializers.get(node.input[1]) if node.op_type == "MatMul" else None
        if (
            init is None
            or node.name in keep
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
        rewritten_weights.add(init.name)
        prefix = f"q8/{rewritten}"
        added += [
            numpy_helper.from_array(blocks.q, f"{prefix}/q"),
            numpy_helper.from_array(blocks.scales, f"{prefix}/scales"),
            numpy_helper.from_array(
                np.full(n * (k // BLOCK), ZERO_POINT, np.uint8), f"{prefix}/zero_points"
            ),
        ]
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                [node.input[0], f"{prefix}/q", f"{prefix}/scales", f"{prefix}/zero_points"],
                list(node.output),
                f"{prefix}/matmul_nbits",
                domain=CONTRIB_DOMAIN,
                K=k,
                N=n,
                bits=8,
                block_size=BLOCK,
                accuracy_level=accuracy_level,
            )
        )
    if rewritten == 0:
        raise ValueError(
            "no float32 MatMul weight with a multiple of 32 inputs in the main graph: "
            "nothing to write as 8-bit blocks"
        )
    replace_nodes(model, nodes, rewritten_weights, added)
    return rewritten
