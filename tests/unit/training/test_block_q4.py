"""The q4 variant's block re-encoding: weights on a Q4_1 grid (the default model's) come back
exactly, through ONNX Runtime's MatMulNBits and the block-minimum correction; others are
rounded to their block's 16 levels."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from training.block_q4 import BLOCK, LEVELS, quantize_blocks, rewrite_matmuls


def q4_1_weight(k: int, n: int, seed: int = 0) -> np.ndarray:
    """A ``[K, N]`` weight as ggml's Q4_1 leaves it: per block of 32 along K, w = d·q + m with
    fp16 d and m, and q = 0 and q = 15 both present."""
    rng = np.random.default_rng(seed)
    d = rng.uniform(0.005, 0.05, size=(n, k // BLOCK, 1)).astype(np.float16).astype(np.float32)
    m = rng.uniform(-0.4, 0.0, size=(n, k // BLOCK, 1)).astype(np.float16).astype(np.float32)
    q = rng.integers(0, LEVELS + 1, size=(n, k // BLOCK, BLOCK))
    q[..., 0], q[..., 1] = 0, LEVELS
    return (d * q + m).astype(np.float32).reshape(n, k).T.copy()


def matmul_graph(weight: np.ndarray) -> onnx.ModelProto:
    k, n = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], "proj/MatMul")],
        "proj",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", n])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_a_q4_1_weight_is_recovered_exactly() -> None:
    weight = q4_1_weight(128, 48)
    blocks = quantize_blocks(weight)
    assert blocks.exact
    q = np.stack([blocks.packed & 0x0F, blocks.packed >> 4], axis=-1).reshape(48, 4, BLOCK)
    rebuilt = q * blocks.scales.reshape(48, 4, 1) + blocks.minima.T.reshape(48, 4, 1)
    assert np.array_equal(rebuilt.reshape(48, 128).T.astype(np.float32), weight)


def test_a_weight_off_any_grid_is_rounded_within_half_a_level() -> None:
    weight = np.random.default_rng(1).normal(0, 0.1, size=(64, 16)).astype(np.float32)
    blocks = quantize_blocks(weight)
    assert not blocks.exact
    q = np.stack([blocks.packed & 0x0F, blocks.packed >> 4], axis=-1).reshape(16, 2, BLOCK)
    step = blocks.scales.reshape(16, 2, 1)
    rebuilt = (q * step + blocks.minima.T.reshape(16, 2, 1)).reshape(16, 64).T
    assert np.all(np.abs(rebuilt - weight) <= step.max() / 2 + 1e-7)


def test_the_rewritten_graph_computes_what_the_fp32_matmul_did() -> None:
    weight = q4_1_weight(256, 96, seed=2)
    x = np.random.default_rng(3).normal(size=(2, 5, 256)).astype(np.float32)
    reference = run(matmul_graph(weight), x)
    model = matmul_graph(weight)
    assert rewrite_matmuls(model) == (1, 1)
    assert {node.op_type for node in model.graph.node} >= {"MatMulNBits", "ReduceSum"}
    assert not any(init.name == "w" for init in model.graph.initializer)  # fp32 weight gone
    np.testing.assert_allclose(run(model, x), reference, rtol=1e-4, atol=1e-4)


def test_weights_that_share_an_input_share_its_block_sums() -> None:
    k = 64
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "wq"], ["q"], "q_proj/MatMul"),
            helper.make_node("MatMul", ["x", "wk"], ["k"], "k_proj/MatMul"),
        ],
        "qk",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, k])],
        [
            helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 3, 32]),
            helper.make_tensor_value_info("k", TensorProto.FLOAT, [1, 3, 32]),
        ],
        [
            numpy_helper.from_array(q4_1_weight(k, 32, seed=4), "wq"),
            numpy_helper.from_array(q4_1_weight(k, 32, seed=5), "wk"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    assert rewrite_matmuls(model) == (2, 2)
    assert sum(node.op_type == "ReduceSum" for node in model.graph.node) == 1
