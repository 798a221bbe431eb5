"""LoRA target layers chosen from the architecture: the table names layers each architecture
really has (tiny models built from configs, no download), peft accepts them, and a model the
table does not know gets its linear layers found by walking it."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from training.finetune.targets import (
    ARCHITECTURE_TARGETS,
    NoLoraTargetsError,
    TargetScope,
    adaptable_layers,
    lora_targets,
    top_blocks,
)

_DECODER = {
    "vocab_size": 96,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 8,
    "pad_token_id": 0,
}
# the few configs whose size arguments have other names
_SIZES: dict[str, dict[str, Any]] = {
    "gpt2": {"vocab_size": 96, "n_embd": 16, "n_layer": 2, "n_head": 2},
    "gpt_bigcode": {"vocab_size": 96, "n_embd": 16, "n_layer": 2, "n_head": 2},
    "gptj": {"vocab_size": 96, "n_embd": 16, "n_layer": 2, "n_head": 2, "rotary_dim": 4},
    "bloom": {"vocab_size": 96, "hidden_size": 16, "n_layer": 2, "n_head": 2},
    "falcon": {
        "vocab_size": 96, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
    },
    "opt": {
        "vocab_size": 96, "hidden_size": 16, "ffn_dim": 32, "num_hidden_layers": 2,
        "num_attention_heads": 2, "word_embed_proj_dim": 16,
    },
    "gpt_neo": {
        "vocab_size": 96, "hidden_size": 16, "num_layers": 2, "num_heads": 2,
        "attention_types": [[["global"], 2]],
    },
}  # fmt: skip
ARCHITECTURES = [
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "phi",
    "starcoder2", "olmo2", "granite", "gpt2", "gpt_bigcode", "falcon", "bloom", "gpt_neox",
    "opt", "gptj", "gpt_neo",
]  # fmt: skip


def tiny_model(model_type: str) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(model_type, **_SIZES.get(model_type, _DECODER))
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


def adapted_layer_names(model: Any, targets: tuple[str, ...], fan_in_fan_out: bool) -> set[str]:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=2, target_modules=list(targets), fan_in_fan_out=fan_in_fan_out, task_type="CAUSAL_LM"
    )
    wrapped = get_peft_model(model, config)
    return {
        name.removeprefix("base_model.model.")
        for name, module in wrapped.named_modules()
        if hasattr(module, "lora_A") and isinstance(module.lora_A, torch.nn.ModuleDict)
    }


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_every_architecture_in_the_table_has_the_layers_it_names(model_type: str) -> None:
    model = tiny_model(model_type)
    for scope in TargetScope:
        targets = lora_targets(model, scope)
        assert targets.chosen_by == "architecture"
        known = ARCHITECTURE_TARGETS[model_type]
        expected = known.attention + (known.mlp if scope is TargetScope.ATTENTION_MLP else ())
        assert targets.modules == expected
    # peft adapts them (a Conv1D without fan_in_fan_out would warn, and warnings are errors),
    # and never the output head
    adapted = adapted_layer_names(model, targets.modules, targets.fan_in_fan_out)
    assert adapted
    assert not any(name.endswith(("lm_head", "embed_out")) for name in adapted)
    for target in targets.modules:  # in every block, once
        matching = [name for name in adapted if name.endswith("." + target)]
        assert len(matching) == model.config.num_hidden_layers, target


def test_attention_only_leaves_the_mlp_alone_on_the_tiny_llama() -> None:
    model = tiny_model("llama")
    attention = lora_targets(model, TargetScope.ATTENTION)
    assert attention.modules == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert not attention.fan_in_fan_out
    both = lora_targets(model, TargetScope.ATTENTION_MLP)
    assert both.modules[4:] == ("gate_proj", "up_proj", "down_proj")


def test_gpt2s_attention_targets_leave_its_mlp_projection_alone() -> None:
    model = tiny_model("gpt2")
    targets = lora_targets(model, TargetScope.ATTENTION)
    adapted = adapted_layer_names(model, targets.modules, targets.fan_in_fan_out)
    assert targets.fan_in_fan_out
    assert adapted == {
        f"transformer.h.{i}.attn.{name}" for i in (0, 1) for name in ("c_attn", "c_proj")
    }


class MysteryConfig:
    def __init__(self, model_type: str) -> None:
        self.model_type = model_type
        self.num_hidden_layers = 1


class MysteryBlock(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wq = torch.nn.Linear(8, 8)
        self.wo = torch.nn.Linear(8, 8)
        self.norm = torch.nn.LayerNorm(8)


class MysteryModel(torch.nn.Module):
    """A causal LM of an architecture the table does not know."""

    def __init__(self, model_type: str = "mystery") -> None:
        super().__init__()
        self.config = MysteryConfig(model_type)
        self.embed = torch.nn.Embedding(16, 8)
        self.blocks = torch.nn.ModuleList([MysteryBlock()])
        self.lm_head = torch.nn.Linear(8, 16)

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.lm_head


def test_an_unknown_architecture_gets_its_linear_layers_but_the_output_head() -> None:
    targets = lora_targets(MysteryModel())
    assert targets.chosen_by == "discovered"
    assert targets.modules == ("wo", "wq")
    assert "lm_head" not in adaptable_layers(MysteryModel())


def test_a_known_type_whose_layers_have_other_names_falls_back_to_discovery() -> None:
    targets = lora_targets(MysteryModel("llama"))
    assert targets.chosen_by == "discovered"
    assert targets.modules == ("wo", "wq")


def test_a_model_without_linear_layers_is_refused_clearly() -> None:
    model = MysteryModel()
    model.blocks = torch.nn.ModuleList()
    with pytest.raises(NoLoraTargetsError, match="no linear layer to adapt"):
        lora_targets(model)


def test_given_targets_are_checked_against_the_model() -> None:
    model = tiny_model("llama")
    given = lora_targets(model, given=["q_proj", "down_proj"])
    assert (given.modules, given.chosen_by) == (("q_proj", "down_proj"), "given")
    with pytest.raises(NoLoraTargetsError, match=r"c_attn.*its linear layers are"):
        lora_targets(model, given=["q_proj", "c_attn"])


def test_top_blocks_are_the_last_ones_and_all_means_none() -> None:
    model = tiny_model("llama")  # 2 blocks
    assert top_blocks(model, 1) == [1]
    assert top_blocks(model, 2) is None
    assert top_blocks(model, None) is None
