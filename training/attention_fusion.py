"""Each decoder layer's attention as one ``GroupQueryAttention`` kernel: a graph edit on the
exported model after ONNX Runtime's transformer fusions (``variants.fuse_graph``).

Those fusions turn RoPE and RMSNorm into kernels but leave attention as optimum exported it:
about 150 nodes a layer, most of them shape arithmetic (the KV heads repeated to the query
heads, scale, mask, softmax, NaN guard, transposes), a third of a CPU decode step for the
default model. This edit replaces them, layer by layer, with ONNX Runtime's
``GroupQueryAttention`` (com.microsoft), which reads the KV heads as they are and appends the
new key and value to the cache itself (the default model: 5,088 nodes before, 536 after).

Left padding. GQA's own model of padding is right padding: ``seqlens_k`` gives each row's
valid length and the cache is filled from the left. chatq's engine left-pads rows and lets rows
of different lengths share a batch. So every row is declared full (``seqlens_k`` = total length
- 1 for all rows, ``total_sequence_length`` = the mask's width): the cache GQA writes is then
exactly past + new, the layout the engine carries from ``present.*`` to ``past_key_values.*``,
and the padding enters through ``attention_bias``, built once from the boolean mask the exported
graph already computes (causal and padding, ``[batch, 1, new, past + new]``).

The masked score is ``MASKED_SCORE``, not the graph's ``-inf``: in a prefill, a padded query
position sees nothing but padding, and ``-inf`` would make its softmax NaN (the unfused graph
turned that NaN into 0 with IsNaN/Where; GQA has no such step). A NaN hidden state at a padded
position becomes a NaN key and value in the cache, and a real row that gives it probability 0
still multiplies 0 by NaN. With a finite score the padded position averages padding values
instead, which no real position ever reads.

RoPE. GQA could rotate too (``do_rotary``), but in a prompt it reads only the first position id
of a row and counts up from it, while a left-padded row starts its positions after the padding.
So the exported ``RotaryEmbedding`` kernels stay, with the same position ids, applied to the
``[batch, sequence, heads × head_dim]`` projections GQA takes.

One limit: GQA refuses several new tokens on top of a non-empty cache in a batch of more than
one row ("batch_size must be 1 when sequence_length > 1 and past context is given"). The engine
never asks for that (a prefill starts from an empty cache, every later step is one token, and a
prompt prefilled after its kept prefix, ``prefix_cache``, is prefilled alone); chunked prefill
or speculative decoding of batches would need the unfused graph.

The edit matches the subgraph of the ``text-generation-with-past`` export of Llama-style models
(tested: SmolLM2, a random Llama) after ``optimize_model``; a graph that differs anywhere is
refused with ``AttentionPatternError`` before anything is changed, so the caller can keep the
graph as it is. Inputs, outputs and the KV cache's shapes stay what they were.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

MS_DOMAIN = "com.microsoft"
PREFIX = "chatq/attention"
# ONNX Runtime's own mask_filter_value: exp() of it, relative to any real score, is exactly 0 in
# fp32 and fp16 alike, and unlike float32's minimum it stays finite if the fp16 variant converts
# the graph.
MASKED_SCORE = -10_000.0
# the exported mask's "masked" branch must be at least this negative to be a mask
_MASK_THRESHOLD = -1_000.0
_HEADS_TO_SEQUENCE = [0, 2, 1, 3]  # [batch, seq, heads, dim] <-> [batch, heads, seq, dim]
_KEY_TRANSPOSED = [0, 1, 3, 2]  # K^T for Q·K^T


class AttentionPatternError(ValueError):
    """The graph's attention is not the subgraph this edit knows how to replace."""


@dataclass(frozen=True)
class Rotary:
    position_ids: str
    cos_cache: str
    sin_cache: str
    interleaved: int


@dataclass(frozen=True)
class LayerAttention:
    """One layer's attention, by the names of the tensors around it."""

    query: str  # q_proj's output, [batch, seq, heads * head_dim], before RoPE
    key: str  # k_proj's output, [batch, seq, kv_heads * head_dim], before RoPE
    value: str  # v_proj's output
    past_key: str
    past_value: str
    present_key: str
    present_value: str
    output: str  # what o_proj reads, [batch, seq, heads * head_dim]
    mask: str  # boolean, True where a query may attend: [batch, 1, seq, past + seq]
    scale: float  # applied to Q·K^T
    rotary: Rotary
    replaced: tuple[NodeProto, ...]  # the nodes whose outputs GQA produces instead


class GraphIndex:
    """Lookups over a graph: who produces a tensor, who reads it, what a constant holds."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.producer: dict[str, NodeProto] = {}
        self.consumers: dict[str, list[NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.output:
                self.producer[name] = node
            for name in node.input:
                self.consumers[name].append(node)
        self.initializers = {init.name: init for init in graph.initializer}
        self.inputs = {value.name for value in graph.input}
        self.outputs = {value.name for value in graph.output}

    def produced_by(self, name: str, op_type: str) -> NodeProto:
        node = self.producer.get(name)
        if node is None or node.op_type != op_type:
            found = node.op_type if node is not None else "a graph input or initializer"
            raise AttentionPatternError(f"{name!r} comes from {found}, expected {op_type}")
        return node

    def only_consumer(self, name: str, op_type: str) -> NodeProto:
        readers = self.consumers.get(name, [])
        if len(readers) != 1 or readers[0].op_type != op_type:
            kinds = [node.op_type for node in readers]
            raise AttentionPatternError(f"{name!r} is read by {kinds}, expected one {op_type}")
        return readers[0]

    def constant(self, name: str) -> np.ndarray | None:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    return numpy_helper.to_array(attribute.t)
        return None

    def scalar(self, name: str) -> float:
        value = self.constant(name)
        if value is None or value.size != 1:
            raise AttentionPatternError(f"{name!r} is not a constant scalar")
        return float(value.reshape(-1)[0])


def _attribute(node: NodeProto, name: str) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return None


def _require_transpose(graph: GraphIndex, name: str, perm: list[int]) -> NodeProto:
    node = graph.produced_by(name, "Transpose")
    if list(_attribute(node, "perm") or []) != perm:
        raise AttentionPatternError(f"{node.name}: perm {_attribute(node, 'perm')}, not {perm}")
    return node


def _heads_input(graph: GraphIndex, name: str) -> str:
    """``name`` = Transpose(Reshape(x)) splitting ``x`` ``[batch, seq, heads * dim]`` into
    ``[batch, heads, seq, dim]``; returns ``x``."""
    transpose = _require_transpose(graph, name, _HEADS_TO_SEQUENCE)
    return graph.produced_by(transpose.input[0], "Reshape").input[0]


def _without_repeated_heads(graph: GraphIndex, name: str) -> str:
    """transformers' ``repeat_kv`` (Unsqueeze → Expand → Reshape) undone; a model with as many
    KV heads as query heads has none."""
    node = graph.producer.get(name)
    if node is None or node.op_type != "Reshape":
        return name
    expand = graph.produced_by(node.input[0], "Expand")
    return graph.produced_by(expand.input[0], "Unsqueeze").input[0]


def _cache_concat(graph: GraphIndex, present: str) -> NodeProto:
    """``present`` = Concat(past, new) along the sequence axis, a graph output."""
    concat = graph.produced_by(present, "Concat")
    if (
        present not in graph.outputs
        or len(concat.input) != 2
        or concat.input[0] not in graph.inputs
    ):
        raise AttentionPatternError(f"{present!r} is not Concat(past input, new) as a graph output")
    if _attribute(concat, "axis") not in (2, -2):
        raise AttentionPatternError(
            f"{concat.name} concatenates along axis {_attribute(concat, 'axis')}"
        )
    return concat


# RotaryEmbedding attributes at these values mean what they mean on a 3-D input too; others
# (partial rotation, packed batches, a scale) are not carried over, so they are refused
_ROTARY_DEFAULTS = {
    "num_heads": 0,
    "rotary_embedding_dim": 0,
    "is_packed_batching": 0,
    "scale": 1.0,
}


def _rotary(node: NodeProto) -> Rotary:
    if node.domain != MS_DOMAIN or len(node.input) != 4:
        raise AttentionPatternError(
            f"{node.name} is not com.microsoft RotaryEmbedding with 4 inputs"
        )
    for name, default in _ROTARY_DEFAULTS.items():
        value = _attribute(node, name)
        if value is not None and value != default:
            raise AttentionPatternError(
                f"{node.name} has {name}={value}: only full rotation is fused"
            )
    position_ids, cos_cache, sin_cache = node.input[1:4]
    return Rotary(position_ids, cos_cache, sin_cache, int(_attribute(node, "interleaved") or 0))


def _scaled(graph: GraphIndex, name: str) -> tuple[str, float]:
    """``name`` = Mul(x, c) with a constant scalar ``c``: (x, c); anything else: (name, 1)."""
    node = graph.producer.get(name)
    if node is None or node.op_type != "Mul":
        return name, 1.0
    for tensor, factor in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        if graph.constant(factor) is not None:
            return tensor, graph.scalar(factor)
    raise AttentionPatternError(f"{node.name} multiplies by no constant scalar")


def _mask_of(graph: GraphIndex, bias: str) -> str:
    """The boolean mask behind the additive bias Where(mask, 0, -inf); an optional Slice of the
    mask to the key length (which it already has) is looked through."""
    where = graph.produced_by(bias, "Where")
    allowed, masked = graph.scalar(where.input[1]), graph.scalar(where.input[2])
    if allowed != 0.0 or not masked <= _MASK_THRESHOLD:
        raise AttentionPatternError(f"{where.name} is Where(mask, {allowed}, {masked}), not a mask")
    mask = where.input[0]
    cut = graph.producer.get(mask)
    if cut is not None and cut.op_type == "Slice":
        starts = graph.constant(cut.input[1])
        if starts is None or np.any(starts != 0):
            raise AttentionPatternError(f"{cut.name} cuts the mask somewhere other than its end")
        mask = cut.input[0]
    return mask


def _match_layer(graph: GraphIndex, softmax: NodeProto) -> LayerAttention:
    """The attention subgraph around one Softmax, or AttentionPatternError."""
    if _attribute(softmax, "axis") not in (None, -1, 3):
        raise AttentionPatternError(f"{softmax.name} is not over the key axis")
    add = graph.produced_by(softmax.input[0], "Add")
    scores_name, bias_name = add.input
    if graph.producer.get(scores_name) is None or graph.producer[scores_name].op_type != "MatMul":
        scores_name, bias_name = bias_name, scores_name
    scores = graph.produced_by(scores_name, "MatMul")
    mask = _mask_of(graph, bias_name)

    rotated_query, query_scale = _scaled(graph, scores.input[0])
    transposed_key, key_scale = _scaled(graph, scores.input[1])
    query_rope = graph.produced_by(rotated_query, "RotaryEmbedding")
    key_t = _require_transpose(graph, transposed_key, _KEY_TRANSPOSED)
    key_concat = _cache_concat(graph, _without_repeated_heads(graph, key_t.input[0]))
    key_rope = graph.produced_by(key_concat.input[1], "RotaryEmbedding")
    rotary = _rotary(query_rope)
    if _rotary(key_rope) != rotary:
        raise AttentionPatternError(f"{query_rope.name} and {key_rope.name} rotate differently")

    probabilities = softmax.output[0]
    guards = [node for node in graph.consumers[probabilities] if node.op_type == "Where"]
    if guards:  # Where(IsNaN(p), 0, p): rows with every key masked
        probabilities = guards[0].output[0]
    weighted = graph.only_consumer(probabilities, "MatMul")
    value_concat = _cache_concat(graph, _without_repeated_heads(graph, weighted.input[1]))
    merge = graph.only_consumer(weighted.output[0], "Transpose")
    if list(_attribute(merge, "perm") or []) != _HEADS_TO_SEQUENCE:
        raise AttentionPatternError(f"{merge.name} does not merge the heads back")
    merged = graph.only_consumer(merge.output[0], "Reshape")
    return LayerAttention(
        query=_heads_input(graph, query_rope.input[0]),
        key=_heads_input(graph, key_rope.input[0]),
        value=_heads_input(graph, value_concat.input[1]),
        past_key=key_concat.input[0],
        past_value=value_concat.input[0],
        present_key=key_concat.output[0],
        present_value=value_concat.output[0],
        output=merged.output[0],
        mask=mask,
        scale=query_scale * key_scale,
        rotary=rotary,
        replaced=(key_concat, value_concat, merged),
    )


def _check_heads(graph: GraphIndex, layer: LayerAttention, config: Any) -> None:
    """Head counts from ``config`` against the graph: the rotary cache's width is half a head,
    and the projections' weights (when constant) are heads × head_dim wide."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    cos = graph.initializers.get(layer.rotary.cos_cache)
    if cos is None or len(cos.dims) != 2 or cos.dims[1] * 2 != head_dim:
        raise AttentionPatternError(f"the rotary cache does not rotate whole heads of {head_dim}")
    widths = {
        layer.query: config.num_attention_heads * head_dim,
        layer.key: config.num_key_value_heads * head_dim,
        layer.value: config.num_key_value_heads * head_dim,
    }
    for name, width in widths.items():
        projection = graph.producer.get(name)
        if projection is None or projection.op_type != "MatMul":
            continue
        weight = graph.initializers.get(projection.input[1])
        if weight is not None and (len(weight.dims) != 2 or weight.dims[1] != width):
            raise AttentionPatternError(f"{name!r} is {list(weight.dims)}, not {width} wide")


def match_layers(model: Any, config: Any) -> list[LayerAttention]:
    """Every layer's attention in ``model``'s main graph, checked against ``config``'s head
    counts, or AttentionPatternError."""
    graph = GraphIndex(model.graph)
    softmaxes = [node for node in model.graph.node if node.op_type == "Softmax"]
    if len(softmaxes) != config.num_hidden_layers:
        raise AttentionPatternError(
            f"{len(softmaxes)} Softmax nodes for {config.num_hidden_layers} layers: "
            "not one attention per layer"
        )
    layers = [_match_layer(graph, softmax) for softmax in softmaxes]
    if len({layer.mask for layer in layers}) != 1:
        raise AttentionPatternError("the layers read different masks")
    for layer in layers:
        _check_heads(graph, layer, config)
    return layers


def _shared_nodes(mask: str) -> tuple[list[NodeProto], list[TensorProto], dict[str, str]]:
    """The inputs every layer's GQA shares, from the mask alone: the additive bias, each row's
    last position (all rows full length, see the module docstring) and the total length."""
    names = {key: f"{PREFIX}/{key}" for key in ("bias", "seqlens_k", "total_sequence_length")}
    constants: dict[str, np.ndarray] = {
        "allowed": np.array(0.0, np.float32),
        "masked": np.array(MASKED_SCORE, np.float32),
        "batch_axis": np.array(0, np.int64),
        "key_axis": np.array(3, np.int64),
        "unsqueeze_axes": np.array([0], np.int64),
        "one": np.array(1, np.int32),
    }
    c = {key: f"{PREFIX}/{key}" for key in constants}
    initializers = [numpy_helper.from_array(value, c[key]) for key, value in constants.items()]
    p = PREFIX
    nodes = [
        helper.make_node("Where", [mask, c["allowed"], c["masked"]], [names["bias"]], f"{p}/bias"),
        helper.make_node("Shape", [mask], [f"{p}/mask_shape"], f"{p}/mask_shape"),
        helper.make_node(
            "Gather", [f"{p}/mask_shape", c["key_axis"]], [f"{p}/total64"], f"{p}/total64"
        ),
        helper.make_node(
            "Cast",
            [f"{p}/total64"],
            [names["total_sequence_length"]],
            f"{p}/total",
            to=TensorProto.INT32,
        ),
        helper.make_node(
            "Sub", [names["total_sequence_length"], c["one"]], [f"{p}/last"], f"{p}/last"
        ),
        helper.make_node(
            "Gather", [f"{p}/mask_shape", c["batch_axis"]], [f"{p}/batch"], f"{p}/batch"
        ),
        helper.make_node(
            "Unsqueeze", [f"{p}/batch", c["unsqueeze_axes"]], [f"{p}/batch_1d"], f"{p}/batch_1d"
        ),
        helper.make_node(
            "Expand", [f"{p}/last", f"{p}/batch_1d"], [names["seqlens_k"]], f"{p}/seqlens_k"
        ),
    ]
    return nodes, initializers, names


def _layer_nodes(
    layer: LayerAttention, index: int, shared: dict[str, str], config: Any
) -> list[NodeProto]:
    """RoPE on the 3-D projections, then GQA writing the layer's output and cache."""
    rotary = layer.rotary
    prefix = f"{PREFIX}/{index}"
    nodes: list[NodeProto] = []
    rotated: dict[str, str] = {}
    for part, name in (("query", layer.query), ("key", layer.key)):
        rotated[part] = f"{prefix}/{part}_rotated"
        node = helper.make_node(
            "RotaryEmbedding",
            [name, rotary.position_ids, rotary.cos_cache, rotary.sin_cache],
            [rotated[part]],
            f"{prefix}/{part}_rotary",
            domain=MS_DOMAIN,
            interleaved=rotary.interleaved,
        )
        nodes.append(node)
    nodes.append(
        helper.make_node(
            "GroupQueryAttention",
            [
                rotated["query"], rotated["key"], layer.value, layer.past_key, layer.past_value,
                shared["seqlens_k"], shared["total_sequence_length"],
                "", "", "",  # cos_cache, sin_cache, position_ids: RoPE is done above
                shared["bias"],
            ],
            [layer.output, layer.present_key, layer.present_value],
            f"{prefix}/GroupQueryAttention",
            domain=MS_DOMAIN,
            num_heads=config.num_attention_heads,
            kv_num_heads=config.num_key_value_heads,
            scale=layer.scale,
        )
    )  # fmt: skip
    return nodes


def _topological(nodes: list[NodeProto]) -> list[NodeProto]:
    """``nodes`` ordered so that every tensor is produced before it is read; among the nodes
    ready at once, the earlier in ``nodes`` first (the exported order stays where it can)."""
    producers = {name: index for index, node in enumerate(nodes) for name in node.output if name}
    waiting = [0] * len(nodes)
    readers: dict[int, list[int]] = defaultdict(list)
    for index, node in enumerate(nodes):
        needs = {producers[name] for name in node.input if name and name in producers}
        waiting[index] = len(needs)
        for need in needs:
            readers[need].append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for reader in readers[index]:
            waiting[reader] -= 1
            if waiting[reader] == 0:
                heapq.heappush(ready, reader)
    if len(order) != len(nodes):
        raise AttentionPatternError("the rewritten graph has a cycle")
    return [nodes[index] for index in order]


def _live_nodes(nodes: list[NodeProto], outputs: set[str]) -> list[NodeProto]:
    """``nodes`` (in topological order) without those nothing reads, transitively."""
    needed = set(outputs)
    live = []
    for node in reversed(nodes):
        if any(name in needed for name in node.output):
            live.append(node)
            needed.update(name for name in node.input if name)
    return live[::-1]


def _replace_nodes(
    model: Any, removed: list[NodeProto], added: list[NodeProto], initializers: list[TensorProto]
) -> None:
    graph = model.graph
    removed_ids = {id(node) for node in removed}
    nodes = [node for node in graph.node if id(node) not in removed_ids] + added
    nodes = _live_nodes(_topological(nodes), {value.name for value in graph.output})
    read = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name in read] + initializers
    produced = {name for node in nodes for name in node.output}
    value_info = [value for value in graph.value_info if value.name in produced]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]
    graph.value_info.extend(value_info)
    if not any(opset.domain == MS_DOMAIN for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))


def fuse_attention(model: Any, config: Any) -> Any:
    """``model`` (an ``onnx.ModelProto``) with each layer's attention as one GroupQueryAttention.

    ``config`` is the model's transformers config (head counts, layers). Edited in place and
    returned; a graph that does not match is refused with AttentionPatternError and left as it
    was. Only the main graph is read: a model whose weights sit in external data files needs
    them loaded (``onnx.load`` does) so that the projection widths can be checked.
    """
    layers = match_layers(model, config)
    shared_nodes, initializers, shared = _shared_nodes(layers[0].mask)
    added = list(shared_nodes)
    for index, layer in enumerate(layers):
        added += _layer_nodes(layer, index, shared, config)
    removed = [node for layer in layers for node in layer.replaced]
    _replace_nodes(model, removed, added, initializers)
    return model
