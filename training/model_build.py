"""``chatq model build``: a Hugging Face causal LM (a folder, or the default GGUF) → fp32
PyTorch folder → ONNX with KV cache, checked for greedy-token parity, described by a manifest.

Idempotent: a folder already built from the same source is left alone unless ``force``.
The new build is made beside the target and swapped in at the end, so a failed or interrupted
build never leaves a half-written model where the workers look.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shared.logs import get_logger
from shared.model_layout import ModelLayout, ModelManifest
from training.default_model import DEFAULT_MODEL_NAME, locate_default_gguf

log = get_logger(__name__)

# Prompts for the build's own parity check (ONNX Runtime vs PyTorch, greedy).
PARITY_PROMPTS = (
    "How do I reset my router?",
    "What is your refund policy?",
    "Where is my order?",
)
PARITY_NEW_TOKENS = 16


class ModelSourceError(ValueError):
    pass


@dataclass(frozen=True)
class ModelSource:
    name: str
    folder: Path  # what from_pretrained reads
    gguf_file: str | None  # a GGUF file inside ``folder`` to convert, if any
    fingerprint: str

    @classmethod
    def default(cls, cache_dir: Path) -> ModelSource:
        gguf = locate_default_gguf(cache_dir)
        stat = gguf.stat()
        digest = hashlib.sha256(f"{gguf.name}:{stat.st_size}".encode()).hexdigest()
        return cls(DEFAULT_MODEL_NAME, gguf.parent, gguf.name, digest)

    @classmethod
    def from_folder(cls, folder: Path) -> ModelSource:
        folder = folder.expanduser().resolve()
        config = folder / "config.json"
        if not config.is_file():
            raise ModelSourceError(
                f"{folder} is not a Hugging Face model folder (no config.json). "
                "Give the folder that save_pretrained wrote."
            )
        digest = hashlib.sha256(config.read_bytes())
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix in {".safetensors", ".bin", ".json", ".model"}:
                digest.update(f"{path.name}:{path.stat().st_size}".encode())
        return cls(folder.name, folder, None, digest.hexdigest())


def _load_source(source: ModelSource) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(source.folder, local_files_only=True, **extra)
    model = AutoModelForCausalLM.from_pretrained(
        source.folder, dtype=torch.float32, local_files_only=True, **extra
    )
    if source.gguf_file:
        # The GGUF weights are dequantised to fp32 on load; the quantiser bookkeeping would make
        # save_pretrained write a model that claims to be quantised (FACTS.md).
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if not tokenizer.chat_template:
        raise ModelSourceError(
            f"{source.folder} has no chat template; chatq builds prompts with it. "
            "Add `chat_template` to its tokenizer_config.json."
        )
    _align_special_tokens(model, tokenizer)
    tokenizer.padding_side = "left"
    # generate() rejects token_type_ids, which some fast tokenizers return (FACTS.md).
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def _first_id(value: int | list[int] | None) -> int | None:
    return value[0] if isinstance(value, list) and value else value  # type: ignore[return-value]


def _align_special_tokens(model: Any, tokenizer: Any) -> None:
    """Make the tokenizer's end and padding tokens the model's own.

    transformers' GGUF tokenizer conversion can name the wrong end token (SmolLM2's GGUF says
    eos is 2, ``<|im_end|>``; the converted tokenizer said ``<|im_start|>``); the model's
    generation config, read from the same metadata, is right.
    """
    eos_id = _first_id(model.generation_config.eos_token_id)
    if eos_id is not None and tokenizer.eos_token_id != eos_id:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
    pad_id = _first_id(model.generation_config.pad_token_id)
    if pad_id is not None:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_id)
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def _greedy_tokens(model: Any, tokenizer: Any) -> list[list[int]]:
    import torch

    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        for text in PARITY_PROMPTS
    ]
    batch = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(
            **batch,
            max_new_tokens=PARITY_NEW_TOKENS,
            min_new_tokens=PARITY_NEW_TOKENS,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id,
        )
    return output[:, batch["input_ids"].shape[1] :].tolist()


def build_model(
    source: ModelSource, model_dir: Path, *, force: bool = False, progress: bool = True
) -> ModelManifest:
    """Build ``source`` into ``model_dir`` (see the module docstring)."""
    layout = ModelLayout(model_dir)
    existing = layout.read_manifest()
    up_to_date = (
        existing is not None
        and existing.fingerprint == source.fingerprint
        and layout.onnx_dir.is_dir()
        and layout.pytorch_dir.is_dir()
    )
    if up_to_date and not force:
        log.info("model_up_to_date", model_dir=str(model_dir), name=existing.name)
        return existing

    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTModelForCausalLM

    staging = ModelLayout(model_dir.with_name(model_dir.name + ".building"))
    shutil.rmtree(staging.root, ignore_errors=True)
    staging.root.mkdir(parents=True)
    steps = tqdm(total=4, desc="model build", unit="step", disable=not progress)
    try:
        steps.set_postfix_str(f"loading {source.name}")
        model, tokenizer = _load_source(source)
        steps.update()

        steps.set_postfix_str("saving fp32 PyTorch folder")
        model.save_pretrained(staging.pytorch_dir)
        tokenizer.save_pretrained(staging.pytorch_dir)
        steps.update()

        steps.set_postfix_str("exporting to ONNX with KV cache")
        with warnings.catch_warnings():
            # The tracer narrates every Python branch it freezes; none matter for export.
            warnings.simplefilter("ignore")
            main_export(
                staging.pytorch_dir,
                staging.onnx_dir,
                task="text-generation-with-past",
                library_name="transformers",
                do_validation=False,  # the greedy-token check below is the stricter test
                local_files_only=True,
            )
        tokenizer.save_pretrained(staging.onnx_dir)
        onnx_model = ORTModelForCausalLM.from_pretrained(
            staging.onnx_dir, use_cache=True, local_files_only=True
        )
        steps.update()

        steps.set_postfix_str("checking ONNX Runtime against PyTorch")
        identical = _greedy_tokens(onnx_model, tokenizer) == _greedy_tokens(model, tokenizer)
        steps.update()
    except BaseException:
        steps.close()
        shutil.rmtree(staging.root, ignore_errors=True)
        raise
    steps.close()
    if not identical:
        log.warning("model_parity_mismatch", source=str(source.folder))

    manifest = ModelManifest(
        name=source.name,
        source=str(source.folder / source.gguf_file) if source.gguf_file else str(source.folder),
        fingerprint=source.fingerprint,
        built_at=datetime.now(UTC),
        parameters=sum(p.numel() for p in model.parameters()),
        parity_tokens_identical=identical,
        parity_prompt_count=len(PARITY_PROMPTS),
    )
    staging.manifest_path.write_text(manifest.model_dump_json(indent=2))
    _swap_into_place(staging.root, model_dir)
    log.info("model_built", model_dir=str(model_dir), name=manifest.name, parity=identical)
    return manifest


def _swap_into_place(staging: Path, target: Path) -> None:
    retired = target.with_name(target.name + ".old")
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        target.rename(retired)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
