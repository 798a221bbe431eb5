"""The model a LoRA adapter is trained on: a chatq model folder (its ``pytorch/``) or any Hugging
Face causal-LM folder, loaded in fp32 with its tokenizer, and named by a fingerprint so an
adapter is only ever merged into the weights it was trained on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.model_layout import ModelLayout
from training.model_build import ModelSource

_WEIGHT_SUFFIXES = {".safetensors", ".bin"}


@dataclass(frozen=True)
class BaseModelFolder:
    folder: Path  # the Hugging Face folder from_pretrained reads
    name: str  # the chatq manifest's name, or the folder's
    fingerprint: str  # of the config and weights: an adapter is merged only into its own base
    chatq_root: Path | None  # the chatq model folder ``folder`` belongs to, if any


def locate_base_model(model_dir: Path) -> BaseModelFolder:
    """``model_dir`` as a chatq model folder (``pytorch/`` inside) or a Hugging Face folder."""
    model_dir = model_dir.expanduser().resolve()
    layout = ModelLayout(model_dir)
    if (layout.pytorch_dir / "config.json").is_file():
        manifest = layout.read_manifest()
        folder = layout.pytorch_dir
        name = manifest.name if manifest else model_dir.name
        return BaseModelFolder(folder, name, _fingerprint(folder), model_dir)
    if (model_dir / "config.json").is_file():
        return BaseModelFolder(model_dir, model_dir.name, _fingerprint(model_dir), None)
    raise FileNotFoundError(
        f"{model_dir} is neither a chatq model folder (with pytorch/ inside) nor a Hugging Face "
        "model folder (with config.json). Build one with `chatq model build`, or give --base."
    )


def _fingerprint(folder: Path) -> str:
    """sha256 of the config and the weight files' bytes (about 1.5 s for SmolLM2-135M's 517 MB).
    ``ModelSource``'s fingerprint hashes file sizes only, which two trainings of one architecture
    share."""
    ModelSource.from_folder(folder)  # the same check that this is a Hugging Face folder
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.name == "config.json" or path.suffix in _WEIGHT_SUFFIXES:
            digest.update(path.name.encode() + b"\0")
            with path.open("rb") as content:
                for chunk in iter(lambda: content.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def load_base_model(base: BaseModelFolder) -> tuple[Any, Any]:
    """The fp32 causal LM and its tokenizer; a tokenizer without a chat template is refused,
    since the prompts are built with it exactly as the worker builds them."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.folder, local_files_only=True)
    if not tokenizer.chat_template:
        raise ValueError(
            f"{base.folder} has no chat template; the worker builds prompts with it. "
            "Add `chat_template` to its tokenizer_config.json."
        )
    model = AutoModelForCausalLM.from_pretrained(
        base.folder, dtype=torch.float32, local_files_only=True
    )
    return model, tokenizer
