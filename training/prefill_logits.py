"""Logits of the last position only: a graph edit on the exported decoder.

optimum exports ``logits`` as ``[batch, sequence, vocab]``: a prefill of 8 prompts of 512 tokens
multiplies 4,096 hidden states by ``lm_head`` (vocab × hidden, the largest matrix of a small
model) to throw all but 8 rows away. chatq's decode loop reads only the last position, so the
edit puts a ``Slice [:, -1:]`` on ``lm_head``'s input: the output becomes ``[batch, 1, vocab]``.
A decode step (one new position) computes exactly what it did before; a prefill computes one row
per sequence.

The output keeps its name and the slice is declared in the output's shape (dimension 1 is the
number 1), so ONNX Runtime's IO binding (optimum allocates output buffers from the declared
shapes) and any reader of the session can tell an edited graph from an old one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.onnx_files import save_atomically

LOGITS = "logits"
SLICE_NODE = "chatq/last_position/Slice"
_INT64_MAX = 2**63 - 1


class UnsupportedGraphError(ValueError):
    """The graph does not end in the ``lm_head`` MatMul this edit knows how to slice."""


def keeps_last_position_only(model: Any) -> bool:
    """Whether ``model`` (an ``onnx.ModelProto``) already outputs the last position's logits."""
    dims = _logits_output(model).type.tensor_type.shape.dim
    return len(dims) == 3 and dims[1].HasField("dim_value") and dims[1].dim_value == 1


def slice_last_position(model: Any) -> bool:
    """Edit ``model`` in place so that ``lm_head`` sees only the last position; False if it
    already did."""
    import numpy as np
    from onnx import helper, numpy_helper

    if keeps_last_position_only(model):
        return False
    graph = model.graph
    producers = [(i, n) for i, n in enumerate(graph.node) if LOGITS in n.output]
    if len(producers) != 1 or producers[0][1].op_type != "MatMul":
        kinds = [n.op_type for _, n in producers]
        raise UnsupportedGraphError(f"`logits` comes from {kinds}, not from one lm_head MatMul")
    position, lm_head = producers[0]
    hidden = lm_head.input[0]
    sliced = f"{hidden}/last_position"
    constants = {
        "starts": np.array([-1], dtype=np.int64),
        "ends": np.array([_INT64_MAX], dtype=np.int64),
        "axes": np.array([1], dtype=np.int64),  # [batch, sequence, hidden]: the sequence axis
    }
    names = {key: f"chatq/last_position/{key}" for key in constants}
    graph.initializer.extend(
        numpy_helper.from_array(value, names[key]) for key, value in constants.items()
    )
    node = helper.make_node(
        "Slice", [hidden, names["starts"], names["ends"], names["axes"]], [sliced], SLICE_NODE
    )
    graph.node.insert(position, node)  # just before lm_head: the node list stays sorted
    lm_head.input[0] = sliced
    sequence_dim = _logits_output(model).type.tensor_type.shape.dim[1]
    sequence_dim.Clear()
    sequence_dim.dim_value = 1
    # a stale shape annotation of the output would contradict the declared one
    stale = [info for info in graph.value_info if info.name == LOGITS]
    for info in stale:
        graph.value_info.remove(info)
    return True


def keep_last_position_logits(model_file: Path) -> bool:
    """Apply ``slice_last_position`` to ``model_file`` in place. The file is replaced atomically
    (a worker loading it meanwhile reads the old graph or the new one, never half of one).
    False if the graph already had the edit (nothing is written)."""
    import onnx

    # External weights stay where they are: the edit adds three small constants and the file
    # is written beside its ``*_data`` file, so the references stay valid.
    model = onnx.load(str(model_file), load_external_data=False)
    if not slice_last_position(model):
        return False
    save_atomically(model, model_file)
    return True


def _logits_output(model: Any) -> Any:
    for output in model.graph.output:
        if output.name == LOGITS:
            return output
    raise UnsupportedGraphError("the graph has no `logits` output")
