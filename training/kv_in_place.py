"""A KV cache written in place: the graph edit that lets ONNX Runtime append each step's key
and value to a buffer with room to spare, instead of copying the whole cache into a new one.

Why: with ``GroupQueryAttention`` (``attention_fusion``) every decode step returns ``present``
= past + the new token, a fresh tensor: the step reads and writes the whole cache. On the
default model a cached token costs 46 KB (30 layers x key and value x 3 heads x 64 floats), so
16 rows at 900 tokens are 660 MB of copying per step, and a decode step at batch 16 took
43 ms at a 56-token cache but 171 ms at 926 (this machine, 2 cores). GQA already knows the
other way: when ``past_key`` and ``present_key`` are the same buffer (``past_present_share_
buffer``, decided by the pointers alone), it writes the new token at its position in the
buffer and leaves the rest where it is. The caller allocates the buffer with room for more
tokens and binds it as input and output (IO binding).

What stops the exported graph from running that way: it takes the past length from the shape
of ``past_key_values.0.key`` (Shape -> Gather index 2) to build its causal and padding mask,
so a buffer longer than the tokens in it breaks the mask's index arithmetic ("indices element
out of data bounds" in a Gather). The edit takes the past length from what is in the cache
instead: the attention mask's width minus the new tokens' count, which is the same number
whenever the two agree (every call the engine makes today) and the right one when the buffer
is longer. GQA's own lengths already come from the mask (``attention_fusion``).

The build applies the edit (``training/model_build.py``) and, where the attention is
GroupQueryAttention, marks the model (``IN_PLACE_METADATA``); the CPU engine then decodes in
place (``services/worker/engine/kv_in_place.py``). Measured on the default model
(``bench/kv_cache.py``): a decode step at batch 16 with a 900-token cache 156 -> 94 ms, at 100
tokens 58 -> 48 ms, logits identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from onnx import NodeProto, TensorProto, helper

from services.worker.engine.kv_in_place import IN_PLACE_METADATA
from training.attention_fusion import GraphIndex
from training.onnx_files import save_atomically

PAST_KEY_PREFIX = "past_key_values."
PAST_LENGTH = "/chatq/past_length_from_mask"


class KvInPlaceError(ValueError):
    """The graph does not take its past length the way this edit expects."""


def past_length_outputs(graph: Any) -> list[str]:
    """The outputs that read the past length off a ``past_key_values`` input's shape; a
    shape read any other way is refused (it would still see the buffer's length)."""
    index = GraphIndex(graph)
    found = []
    for node in graph.node:
        if node.op_type != "Shape" or not node.input[0].startswith(PAST_KEY_PREFIX):
            continue
        for reader in index.consumers[node.output[0]]:
            position = index.constant(reader.input[1]) if reader.op_type == "Gather" else None
            if position is None or int(position.reshape(-1)[0]) != 2:
                raise KvInPlaceError(f"{reader.name} reads the KV cache's shape, not its length")
            found.append(reader.output[0])
    return found


def is_in_place_ready(graph: Any) -> bool:
    """Whether ``graph`` already takes its past length from the attention mask."""
    return any(PAST_LENGTH in node.output for node in graph.node)


def take_past_length_from_mask(model: Any) -> int:
    """Edit ``model`` (an ``onnx.ModelProto``) in place; return how many uses were rewired
    (0 when it was edited before). Raises ``KvInPlaceError`` for a graph that reads the past
    length in a way this edit does not know, before changing anything."""
    graph = model.graph
    if is_in_place_ready(graph):
        return 0
    old = set(past_length_outputs(graph))
    if not old:
        raise KvInPlaceError("the graph never reads the past length off the KV cache's shape")
    nodes: list[NodeProto] = [
        helper.make_node(
            "Constant",
            [],
            [f"{PAST_LENGTH}/one"],
            value=helper.make_tensor("one", TensorProto.INT64, [], [1]),
        ),
        helper.make_node("Shape", ["attention_mask"], [f"{PAST_LENGTH}/mask_shape"]),
        helper.make_node(
            "Gather", [f"{PAST_LENGTH}/mask_shape", f"{PAST_LENGTH}/one"], [f"{PAST_LENGTH}/total"]
        ),
        helper.make_node("Shape", ["input_ids"], [f"{PAST_LENGTH}/ids_shape"]),
        helper.make_node(
            "Gather", [f"{PAST_LENGTH}/ids_shape", f"{PAST_LENGTH}/one"], [f"{PAST_LENGTH}/new"]
        ),
        helper.make_node("Sub", [f"{PAST_LENGTH}/total", f"{PAST_LENGTH}/new"], [PAST_LENGTH]),
    ]
    rewired = 0
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in old:
                node.input[position] = PAST_LENGTH
                rewired += 1
    # the new nodes first: their inputs are graph inputs, and every use comes after them
    for offset, node in enumerate(nodes):
        graph.node.insert(offset, node)
    # what the engine reads from the session: the graph takes a cache buffer with room as both
    # past and present (edited, and GroupQueryAttention appends in place)
    if any(node.op_type == "GroupQueryAttention" for node in graph.node):
        helper.set_model_props(
            model, {**{p.key: p.value for p in model.metadata_props}, IN_PLACE_METADATA: "1"}
        )
    return rewired


def edit_model_file(model_file: Path) -> bool:
    """Apply ``take_past_length_from_mask`` to ``model_file`` in place (atomically, see
    ``save_atomically``); False if it had the edit already. A graph the edit does not fit is
    left as it is (``KvInPlaceError``): the engine then copies the cache as before."""
    import onnx

    model = onnx.load(str(model_file), load_external_data=False)
    if not take_past_length_from_mask(model):
        return False
    save_atomically(model, model_file)
    return True


def step_in_place(
    session: Any,
    feeds: dict[str, np.ndarray],
    buffers: dict[str, Any],
) -> np.ndarray:
    """One decode step of an edited graph with its KV cache in ``buffers``: one
    ``onnxruntime.OrtValue`` per ``past_key_values.*`` input, of shape [batch, heads, room,
    head_dim] with room for at least one more token, bound as that input and as the matching
    ``present.*`` output, so GQA appends the new token in place. ``feeds``: input_ids,
    attention_mask (its width: the tokens in the cache + the new ones), position_ids.
    Returns the logits."""
    binding = session.io_binding()
    for name, value in feeds.items():
        binding.bind_cpu_input(name, value)
    for name, buffer in buffers.items():
        binding.bind_ortvalue_input(name, buffer)
        binding.bind_ortvalue_output(name.replace(PAST_KEY_PREFIX, "present.", 1), buffer)
    binding.bind_output("logits")
    session.run_with_iobinding(binding)
    logits: np.ndarray = binding.get_outputs()[-1].numpy()
    return logits
