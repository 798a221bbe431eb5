"""The q4 variant's block re-encoding: weights on a Q4_1 grid (the default model's) come back
exactly, through ONNX Runtime's MatMulNBits and the block-minimum correction; others are
rounded to their block's 16 levels."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
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


def matmul_graph(
    weight: np.ndarray, leading: tuple[str, ...] = ("batch", "sequence")
) -> onnx.ModelProto:
    k, n = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], "proj/MatMul")],
        "proj",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [*leading, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*leading, n])],
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
    assert "MatMulNBits" in {node.op_type for node in model.graph.node}
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
    summing = [init for init in model.graph.initializer if init.name.endswith("/block_summing")]
    assert len(summing) == 1


@pytest.mark.parametrize("shape", [(7, 96), (1, 2, 3, 96)])
def test_inputs_of_any_rank_are_summed_by_block(shape: tuple[int, ...]) -> None:
    weight = q4_1_weight(96, 40, seed=6)  # three blocks
    x = np.random.default_rng(7).normal(size=shape).astype(np.float32)
    leading = tuple(f"d{i}" for i in range(len(shape) - 1))
    reference = run(matmul_graph(weight, leading), x)
    model = matmul_graph(weight, leading)
    rewrite_matmuls(model)
    np.testing.assert_allclose(run(model, x), reference, rtol=1e-4, atol=1e-4)


def test_a_weight_another_node_still_reads_is_kept() -> None:
    weight = q4_1_weight(64, 64, seed=8)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["y"], "proj/MatMul"),
            helper.make_node("Add", ["y", "w"], ["z"], "tied/Add"),
        ],
        "tied",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 64])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [64, 64])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    assert rewrite_matmuls(model) == (1, 1)
    assert any(init.name == "w" for init in model.graph.initializer)
    x = np.eye(64, dtype=np.float32)
    np.testing.assert_allclose(run(model, x), weight + weight, rtol=1e-5, atol=1e-5)


def test_a_model_with_nothing_to_rewrite_is_refused() -> None:
    model = matmul_graph(np.ones((30, 8), dtype=np.float32))  # 30 inputs: no block of 32
    with pytest.raises(ValueError, match="nothing to write as 4-bit"):
        rewrite_matmuls(model)
