"""``chatq train export``: a LoRA adapter merged into its base model and built into a model folder
the workers serve.

The adapter's weights are folded into the base weights (peft's ``merge_and_unload``), the merged
Hugging Face folder (tokenizer and chat template included) is written beside the target, and
``build_model`` turns it into a normal chatq model folder: ONNX with KV cache, fused graph,
parity with PyTorch checked, optional quantised variants, manifest. The training card goes into
the folder too, so a served model can be traced to its base, data and settings.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path

from shared.logs import get_logger
from shared.model_layout import ModelLayout, ModelManifest
from training.finetune.base_model import load_base_model, locate_base_model
from training.finetune.card import CARD_NAME, TrainingCard
from training.model_build import ModelSource, build_model
from training.variants import Quantization

log = get_logger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


def export_finetuned(
    base_model_dir: Path,
    adapter_dir: Path,
    out_model_dir: Path,
    quantizations: Sequence[Quantization] = (),
    progress: bool = True,
    *,
    force: bool = False,
) -> ModelManifest:
    """Merge ``adapter_dir`` into the base model and build the result into ``out_model_dir``.

    Refused when the adapter's training card names other base weights, and when the target is
    the base's own model folder (export into a new folder, then point CHATQ_MODEL_DIR at it).
    Exporting the same base and adapter again only adds missing variants, unless ``force``.
    """
    from peft import PeftModel

    base = locate_base_model(base_model_dir)
    adapter_dir = adapter_dir.expanduser().resolve()
    out_model_dir = out_model_dir.expanduser().resolve()
    if not (adapter_dir / ADAPTER_CONFIG).is_file():
        raise FileNotFoundError(
            f"{adapter_dir} holds no LoRA adapter ({ADAPTER_CONFIG} is missing); give the folder "
            "`chatq train finetune --out` wrote"
        )
    card = TrainingCard.read(adapter_dir)
    if card is not None and card.base_fingerprint != base.fingerprint:
        raise ValueError(
            f"the adapter in {adapter_dir} was trained on {card.base_model}, whose weights "
            f"differ from {base.folder}'s; give that model as --base"
        )
    if base.chatq_root is not None and out_model_dir == base.chatq_root:
        raise ValueError(
            f"{out_model_dir} is the base model's own folder; export into a new folder, then "
            "point CHATQ_MODEL_DIR at it"
        )

    source = ModelSource(
        name=f"{base.name}+{adapter_dir.name}",
        folder=out_model_dir.with_name(out_model_dir.name + ".merged"),
        gguf_file=None,
        fingerprint=_fingerprint(base.fingerprint, adapter_dir),
    )
    shutil.rmtree(source.folder, ignore_errors=True)
    try:
        model, tokenizer = load_base_model(base)
        merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
        merged.save_pretrained(source.folder)
        tokenizer.save_pretrained(source.folder)
        log.info("adapter_merged", base=str(base.folder), adapter=str(adapter_dir))
        manifest = build_model(
            source, out_model_dir, force=force, quantizations=quantizations, progress=progress
        )
    finally:
        shutil.rmtree(source.folder, ignore_errors=True)

    # the merged folder is gone: the manifest names what it was made of instead
    manifest = manifest.model_copy(update={"source": f"{base.folder} + {adapter_dir}"})
    layout = ModelLayout(out_model_dir)
    layout.write_manifest(manifest)
    if card is not None:
        shutil.copy2(adapter_dir / CARD_NAME, out_model_dir / CARD_NAME)
    log.info("finetuned_model_exported", model_dir=str(out_model_dir), name=manifest.name)
    return manifest


def _fingerprint(base_fingerprint: str, adapter_dir: Path) -> str:
    """Of the base weights and the adapter's bytes: a new adapter always rebuilds."""
    digest = hashlib.sha256(base_fingerprint.encode())
    for path in sorted(adapter_dir.iterdir()):
        weights = path.suffix in {".safetensors", ".bin"} or path.name == ADAPTER_CONFIG
        if path.is_file() and weights:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
