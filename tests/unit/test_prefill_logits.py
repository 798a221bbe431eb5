"""The prefill edit: ``lm_head`` sees the last position only, and its scores are the ones the
whole graph gave for that position (a model head small enough to build here)."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.prefill_logits import (
    UnsupportedGraphError,
    keep_last_position_logits,
    keeps_last_position_only,
    slice_last_position,
)

HIDDEN, VOCAB = 4, 6


def decoder_head(last_op: str = "MatMul") -> onnx.ModelProto:
    """hidden states → a norm stand-in → ``lm_head`` → ``logits``, as optimum exports them."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(
        rng.standard_normal((HIDDEN, VOCAB)).astype(np.float32), "lm_head.weight"
    )
    nodes = [
        helper.make_node("Relu", ["hidden"], ["normed"], "/model/norm"),
        helper.make_node("MatMul", ["normed", "lm_head.weight"], ["scores"], "/lm_head/MatMul"),
    ]
    if last_op == "MatMul":
        nodes[-1].output[0] = "logits"
    else:  # a head that ends in something else (softcapping, a bias)
        nodes.append(helper.make_node(last_op, ["scores"], ["logits"], "/lm_head/Tanh"))
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", HIDDEN])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", VOCAB])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8  # what optimum's export writes; every ONNX Runtime reads it
    return model


def run(model: onnx.ModelProto, hidden: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return session.run(["logits"], {"hidden": hidden})[0]


def test_the_last_position_gets_the_scores_the_whole_graph_gave_it() -> None:
    hidden = np.random.default_rng(1).standard_normal((3, 5, HIDDEN)).astype(np.float32)
    full = run(decoder_head(), hidden)
    model = decoder_head()
    assert slice_last_position(model)
    onnx.checker.check_model(model)
    last = run(model, hidden)
    assert last.shape == (3, 1, VOCAB)
    np.testing.assert_allclose(last[:, 0], full[:, -1], rtol=1e-6)


def test_a_decode_step_computes_what_it_did_before() -> None:
    one_position = np.random.default_rng(2).standard_normal((2, 1, HIDDEN)).astype(np.float32)
    model = decoder_head()
    slice_last_position(model)
    np.testing.assert_array_equal(run(model, one_position), run(decoder_head(), one_position))


def test_the_edit_is_declared_in_the_output_shape_and_made_once() -> None:
    model = decoder_head()
    assert not keeps_last_position_only(model)
    assert slice_last_position(model)
    assert keeps_last_position_only(model)
    nodes = len(model.graph.node)
    assert not slice_last_position(model)  # a second build leaves it alone
    assert len(model.graph.node) == nodes
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    # what optimum's IO binding allocates its output buffer from
    assert session.get_outputs()[0].shape == ["batch", 1, VOCAB]


def test_a_head_that_does_not_end_in_lm_head_is_refused() -> None:
    with pytest.raises(UnsupportedGraphError, match="Tanh"):
        slice_last_position(decoder_head(last_op="Tanh"))


def test_a_model_file_is_edited_in_place_and_stays_readable(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save_model(decoder_head(), str(path))
    assert keep_last_position_logits(path)
    assert keeps_last_position_only(onnx.load(str(path)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no partial file left
    written = path.stat().st_mtime_ns
    assert not keep_last_position_logits(path)
    assert path.stat().st_mtime_ns == written
