"""Which layers LoRA adapts, chosen from the model's architecture.

Every projection of the attention (query, key, value and output) by default, the MLP's too on
request. peft's own table adapts only query and value; on a 135M model the key and output
projections are a small share of the parameters and help the adapter learn a shop's facts.
An architecture missing from the table gets every linear layer but the output head, found by
walking the model (peft's ``all-linear`` rule, written out so the training card names them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from shared.logs import get_logger

log = get_logger(__name__)


class TargetScope(StrEnum):
    ATTENTION = "attention"
    ATTENTION_MLP = "attention+mlp"


@dataclass(frozen=True)
class ArchitectureTargets:
    attention: tuple[str, ...]
    mlp: tuple[str, ...]
    # GPT-2 stores its projections as Conv1D, weights transposed: peft must be told
    fan_in_fan_out: bool = False


_LLAMA_LIKE = ArchitectureTargets(
    ("q_proj", "k_proj", "v_proj", "o_proj"), ("gate_proj", "up_proj", "down_proj")
)
_FUSED_QKV = ArchitectureTargets(("query_key_value", "dense"), ("dense_h_to_4h", "dense_4h_to_h"))

# config.model_type → layer names, matched as peft matches them: a module whose dotted name is the
# target or ends with "." + target (so "attn.c_proj" leaves GPT-2's mlp.c_proj alone).
ARCHITECTURE_TARGETS: dict[str, ArchitectureTargets] = {
    **dict.fromkeys(
        (
            "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text",
            "olmo", "olmo2", "granite", "cohere", "stablelm",
        ),
        _LLAMA_LIKE,
    ),
    # Phi-3 fuses the query, key and value projections, and the gate with the up projection
    "phi3": ArchitectureTargets(("qkv_proj", "o_proj"), ("gate_up_proj", "down_proj")),
    "phi": ArchitectureTargets(("q_proj", "k_proj", "v_proj", "dense"), ("fc1", "fc2")),
    "starcoder2": ArchitectureTargets(("q_proj", "k_proj", "v_proj", "o_proj"), ("c_fc", "c_proj")),
    "gpt2": ArchitectureTargets(
        ("attn.c_attn", "attn.c_proj"), ("mlp.c_fc", "mlp.c_proj"), fan_in_fan_out=True
    ),
    "gpt_bigcode": ArchitectureTargets(("attn.c_attn", "attn.c_proj"), ("mlp.c_fc", "mlp.c_proj")),
    "falcon": _FUSED_QKV,
    "bloom": _FUSED_QKV,
    "gpt_neox": _FUSED_QKV,
    "opt": ArchitectureTargets(("q_proj", "k_proj", "v_proj", "out_proj"), ("fc1", "fc2")),
    "gptj": ArchitectureTargets(("q_proj", "k_proj", "v_proj", "out_proj"), ("fc_in", "fc_out")),
    "gpt_neo": ArchitectureTargets(("q_proj", "k_proj", "v_proj", "out_proj"), ("c_fc", "c_proj")),
}  # fmt: skip


class NoLoraTargetsError(ValueError):
    pass


@dataclass(frozen=True)
class LoraTargets:
    modules: tuple[str, ...]
    fan_in_fan_out: bool
    chosen_by: Literal["architecture", "discovered", "given"]


def lora_targets(
    model: Any, scope: TargetScope = TargetScope.ATTENTION, given: Sequence[str] | None = None
) -> LoraTargets:
    """The layer names to adapt in ``model``: ``given`` ones (checked), the architecture's, or,
    for an architecture not in the table, every linear layer but the output head."""
    layers = adaptable_layers(model)
    if given:
        missing = [name for name in given if not _matches(name, layers)]
        if missing:
            raise NoLoraTargetsError(
                f"no linear layer of the model is named {missing}; "
                f"its linear layers are {sorted(_leaf_names(layers))}"
            )
        return LoraTargets(tuple(given), _has_conv1d(given, layers), "given")

    model_type = getattr(model.config, "model_type", None)
    known = ARCHITECTURE_TARGETS.get(model_type or "")
    if known is not None:
        names = known.attention + (known.mlp if scope is TargetScope.ATTENTION_MLP else ())
        if all(_matches(name, layers) for name in names):
            return LoraTargets(names, known.fan_in_fan_out, "architecture")
        # a variant of the architecture with its own layer names (remote code, a fork)
        log.warning("lora_targets_not_in_model", model_type=model_type, expected=list(names))

    discovered = tuple(sorted(_leaf_names(layers)))
    if not discovered:
        raise NoLoraTargetsError(
            f"found no linear layer to adapt in this {model_type or 'unknown'} model; "
            "name the layers with --target-modules"
        )
    log.info("lora_targets_discovered", model_type=model_type, modules=list(discovered))
    return LoraTargets(discovered, _has_conv1d(discovered, layers), "discovered")


def top_blocks(model: Any, count: int | None) -> list[int] | None:
    """Indices of the last ``count`` transformer blocks (peft's ``layers_to_transform``), or None
    for all of them."""
    blocks = getattr(model.config, "num_hidden_layers", None)
    if count is None or (blocks is not None and count >= blocks):
        return None
    if blocks is None:
        raise NoLoraTargetsError(
            "the model's config does not say how many blocks it has; adapt every block "
            "(--top-layers all)"
        )
    return list(range(blocks - count, blocks))


def adaptable_layers(model: Any) -> dict[str, Any]:
    """Dotted name → module of every linear layer LoRA can adapt, less the output head (it is
    tied to the input embeddings in small models, and adapting it costs the most)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear | Conv1D) and module is not head
    }


def _matches(target: str, layers: dict[str, Any]) -> bool:
    return any(name == target or name.endswith("." + target) for name in layers)


def _leaf_names(layers: dict[str, Any]) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name in layers}


def _has_conv1d(targets: Sequence[str], layers: dict[str, Any]) -> bool:
    from transformers.pytorch_utils import Conv1D

    return any(
        isinstance(module, Conv1D)
        for name, module in layers.items()
        for target in targets
        if name == target or name.endswith("." + target)
    )
