"""The int8 variant's 8-bit blocks: each block of 32 weights rebuilt within half its own step,
and ONNX Runtime's MatMulNBits on them (int8 activations per block) computing what the fp32
MatMul did, to within what 8 bits allow, even where one input channel is an outlier."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.block_q8 import (
    ACCURACY_INT8,
    BLOCK,
    ZERO_POINT,
    own_transposed_weights,
    quantize_blocks,
    rewrite_matmuls,
)


def matmul_graph(*weights: np.ndarray) -> onnx.ModelProto:
    """``x`` times each weight (all ``[K, N]``), outputs ``y0``, ``y1``…"""
    k, n = weights[0].shape
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"], f"proj{i}/MatMul")
            for i in range(len(weights))
        ],
        "proj",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", k])],
        [
            helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, ["batch", "sequence", n])
            for i in range(len(weights))
        ],
        [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_every_weight_is_rebuilt_within_half_of_its_blocks_step() -> None:
    weight = np.random.default_rng(0).normal(0, 0.05, size=(96, 40)).astype(np.float32)
    weight[5, 3] = 4.0  # an outlier coarsens its own block only
    blocks = quantize_blocks(weight)
    assert blocks.q.shape == (40, 96 // BLOCK, BLOCK)
    step = blocks.scales.reshape(40, 96 // BLOCK, 1)
    rebuilt = ((blocks.q.astype(np.float32) - ZERO_POINT) * step).reshape(40, 96).T
    assert np.all(np.abs(rebuilt - weight) <= step.reshape(40, 3).T.repeat(BLOCK, 0) / 2 + 1e-7)
    assert step[3, 0, 0] > 10 * step[3, 1, 0]  # the outlier's block, beside a plain one
    assert np.abs(blocks.q.astype(int) - ZERO_POINT).max() == 127


def test_an_all_zero_block_stays_zero() -> None:
    weight = np.zeros((64, 8), np.float32)
    weight[32:, :] = 0.5
    blocks = quantize_blocks(weight)
    assert np.all(blocks.q[:, 0, :] == ZERO_POINT)


def test_the_rewritten_graph_computes_what_the_fp32_matmul_did() -> None:
    rng = np.random.default_rng(1)
    weight = rng.normal(0, 0.05, size=(256, 64)).astype(np.float32)
    x = rng.normal(size=(2, 5, 256)).astype(np.float32)
    x[..., 7] *= 300  # an activation outlier, as this model's MLP inputs have
    (reference,) = run(matmul_graph(weight), x)
    model = matmul_graph(weight)
    assert rewrite_matmuls(model) == 1
    nodes = [node for node in model.graph.node if node.op_type == "MatMulNBits"]
    attributes = {a.name: helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attributes["bits"] == 8 and attributes["accuracy_level"] == ACCURACY_INT8
    assert not any(init.name == "w0" for init in model.graph.initializer)  # fp32 weight gone
    (quantized,) = run(model, x)
    # per-block int8 activations: the outlier coarsens its block, not every channel
    error = np.abs(quantized - reference).max() / np.abs(reference).max()
    assert error < 0.02


def test_the_nodes_kept_stay_fp32_and_a_graph_without_weights_is_refused() -> None:
    rng = np.random.default_rng(2)
    model = matmul_graph(*(rng.normal(size=(64, 32)).astype(np.float32) for _ in range(2)))
    assert rewrite_matmuls(model, keep={"proj1/MatMul"}) == 1
    assert [node.op_type for node in model.graph.node] == ["MatMulNBits", "MatMul"]
    with pytest.raises(ValueError, match="nothing to write as 8-bit blocks"):
        rewrite_matmuls(matmul_graph(rng.normal(size=(60, 8)).astype(np.float32)))


def tied_embedding_graph(table: np.ndarray) -> onnx.ModelProto:
    """As the export ties them: ``ids`` look up ``table`` ``[V, H]``, and the logits of
    ``hidden`` come from a MatMul with the table's Transpose."""
    vocab, hidden = table.shape
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "ids"], ["embedded"], "embed/Gather"),
            helper.make_node("Transpose", ["table"], ["table_transposed"], "tie", perm=[1, 0]),
            helper.make_node("MatMul", ["hidden", "table_transposed"], ["logits"], "lm_head"),
        ],
        "tied",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", 1, hidden]),
        ],
        [
            helper.make_tensor_value_info("embedded", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, vocab]),
        ],
        [numpy_helper.from_array(table, "table")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_a_tied_output_projection_gets_a_weight_of_its_own_and_becomes_blocks() -> None:
    rng = np.random.default_rng(3)
    table = rng.normal(0, 0.05, size=(96, 64)).astype(np.float32)
    ids = np.array([[3, 95, 0]], dtype=np.int64)
    hidden = rng.normal(size=(2, 1, 64)).astype(np.float32)
    session_inputs = {"ids": ids, "hidden": hidden}

    def outputs(model: onnx.ModelProto) -> list[np.ndarray]:
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        return session.run(None, session_inputs)

    embedded, logits = outputs(tied_embedding_graph(table))
    model = tied_embedding_graph(table)
    # without a weight of its own the output projection has nothing to rewrite
    with pytest.raises(ValueError, match="nothing to write"):
        rewrite_matmuls(tied_embedding_graph(table))
    assert own_transposed_weights(model, {"lm_head"}) == 1
    assert "Transpose" not in [node.op_type for node in model.graph.node]
    assert rewrite_matmuls(model) == 1
    assert [node.op_type for node in model.graph.node] == ["Gather", "MatMulNBits"]
    new_embedded, new_logits = outputs(model)
    np.testing.assert_array_equal(new_embedded, embedded)  # the lookup keeps the fp32 table
    error = np.abs(new_logits - logits).max() / np.abs(logits).max()
    assert 0 < error < 0.02


def test_a_transpose_read_elsewhere_stays_and_other_matmuls_are_left_alone() -> None:
    table = np.ones((64, 32), dtype=np.float32)
    model = tied_embedding_graph(table)
    model.graph.output.append(
        helper.make_tensor_value_info("table_transposed", TensorProto.FLOAT, None)
    )
    assert own_transposed_weights(model, {"lm_head"}) == 1
    assert "Transpose" in [node.op_type for node in model.graph.node]  # still an output
    assert own_transposed_weights(tied_embedding_graph(table), {"another"}) == 0


def test_two_projections_of_one_transpose_share_the_weight_made() -> None:
    model = tied_embedding_graph(np.ones((64, 32), dtype=np.float32))
    model.graph.node.append(
        helper.make_node("MatMul", ["hidden", "table_transposed"], ["logits_again"], "again")
    )
    assert own_transposed_weights(model, {"lm_head", "again"}) == 1
    names = [init.name for init in model.graph.initializer]
    assert len(names) == len(set(names)) == 2  # the table and the one transposed weight
    assert {node.input[1] for node in model.graph.node if node.op_type == "MatMul"} == {names[1]}
