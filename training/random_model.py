"""Causal LMs with random weights, built from a config with no download: the tiny model the
tests run the whole pipeline on, and realistic sizes for speed benchmarks (weights do not
matter for speed). ``chatq model random --preset tiny --out DIR`` writes one; ``chatq model
build --from DIR`` then exports it like any other Hugging Face folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ChatML, the template SmolLM2 and Qwen2 use.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Enough text for a byte-level BPE to learn the words that shop questions use.
_CORPUS = [
    "How do I reset my router? Hold the reset button for ten seconds, then wait for the light.",
    "What is your refund policy? Items can be returned within thirty days for a full refund.",
    "Where is my order? Your order has shipped and will arrive in two to three business days.",
    "Can I change my delivery address? Yes, before the order ships you can change the address.",
    "You are a friendly, concise customer-support assistant for a business.",
    "Thank you for contacting us. Is there anything else I can help you with today?",
    "The weather is nice and the school opens at eight in the morning for all students.",
]


@dataclass(frozen=True)
class RandomModelPreset:
    architecture: str  # "llama" or "qwen2"
    hidden_size: int
    intermediate_size: int
    layers: int
    heads: int
    kv_heads: int
    vocab_size: int  # a BPE trained on the small corpus cannot exceed a few hundred tokens


PRESETS: dict[str, RandomModelPreset] = {
    # two layers, 64 wide: builds and exports in seconds, for tests
    "tiny": RandomModelPreset("llama", 64, 128, 2, 4, 2, 512),
    # Qwen2-0.5B's shape, for GPU speed benchmarks
    "qwen2-0.5b": RandomModelPreset("qwen2", 896, 4864, 24, 14, 2, 151_936),
}


def _train_tokenizer(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab_size, 512),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
        model_input_names=["input_ids", "attention_mask"],
        padding_side="left",
    )


def build_random_model(out_dir: Path, preset_name: str = "tiny", seed: int = 0) -> Path:
    """Write a random-weight causal LM with a ChatML tokenizer to ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    try:
        preset = PRESETS[preset_name]
    except KeyError:
        raise ValueError(f"unknown preset {preset_name!r}; choose from {sorted(PRESETS)}") from None
    tokenizer = _train_tokenizer(preset.vocab_size)
    config_cls = LlamaConfig if preset.architecture == "llama" else Qwen2Config
    config = config_cls(
        # a small trained vocabulary is padded up to the preset's size with unused rows
        vocab_size=max(preset.vocab_size, len(tokenizer)),
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_hidden_layers=preset.layers,
        num_attention_heads=preset.heads,
        num_key_value_heads=preset.kv_heads,
        max_position_embeddings=4096,
        # wide weights make the logits far apart, so fp32 rounding differences between
        # runtimes cannot flip a greedy choice
        initializer_range=0.2,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
