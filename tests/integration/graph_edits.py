"""Undoing chatq's graph edits on a built model: a model as built before them."""

from __future__ import annotations

from typing import Any

import onnx

from services.worker.engine.kv_in_place import IN_PLACE_METADATA
from training.kv_in_place import PAST_LENGTH


def undo_kv_in_place(model: Any) -> None:
    """The past length read off the KV cache's shape again, as exported, and no metadata
    saying the graph takes a buffer with room."""
    graph = model.graph
    for node in [n for n in graph.node if any(o.startswith(PAST_LENGTH) for o in n.output)]:
        graph.node.remove(node)
    two = onnx.helper.make_tensor("/undo/two", onnx.TensorProto.INT64, [], [2])
    graph.initializer.append(two)
    shape = onnx.helper.make_node("Shape", ["past_key_values.0.key"], ["/undo/shape"])
    gather = onnx.helper.make_node("Gather", ["/undo/shape", "/undo/two"], ["/undo/past"])
    graph.node.insert(0, gather)
    graph.node.insert(0, shape)
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name == PAST_LENGTH:
                node.input[position] = "/undo/past"
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != IN_PLACE_METADATA]
    del model.metadata_props[:]
    for key, value in kept:
        model.metadata_props.add(key=key, value=value)
