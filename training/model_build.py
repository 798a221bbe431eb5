"""``chatq model build``: a Hugging Face causal LM (a folder, or the default GGUF) → fp32
PyTorch folder → ONNX with KV cache → fused graph whose logits are the last position's only
(``prefill_logits``), checked for greedy-token parity with PyTorch, plus optional quantised
variants judged by their agreement with fp32; a manifest describes it.

Idempotent: a folder already built from the same source is left alone unless ``force`` (only
missing variants are added, and a graph built before the last-position edit gets it in place and
is checked again). The new build is made beside the target and swapped in at the end, so a
failed or interrupted build never leaves a half-written model where workers look.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shared.logs import get_logger
from shared.model_layout import ModelLayout, ModelManifest
from training.default_model import DEFAULT_MODEL_NAME, locate_default_gguf
from training.kv_in_place import KvInPlaceError, edit_model_file
from training.prefill_logits import UnsupportedGraphError, keep_last_position_logits
from training.variants import (
    AGREEMENT_NEW_TOKENS,
    AGREEMENT_PROMPTS,
    ONNX_FILE,
    Quantization,
    agreement,
    built_by_an_earlier_recipe,
    fuse_graph,
    greedy_tokens,
    quantize,
)

log = get_logger(__name__)


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
        # from_pretrained sets this attribute on the instance; the class does not declare it
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if not tokenizer.chat_template:
        raise ModelSourceError(
            f"{source.folder} has no chat template; chatq builds prompts with it. "
            "Add `chat_template` to its tokenizer_config.json."
        )
    check_chat_template(tokenizer, source.folder)
    _align_special_tokens(model, tokenizer)
    tokenizer.padding_side = "left"
    # generate() rejects token_type_ids, which some fast tokenizers return (FACTS.md).
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    generation_config = model.generation_config
    assert generation_config is not None  # a causal LM can generate, so it has one
    if generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


# The message lists the worker renders: the prompt builder measures the system prompt alone and
# the system prompt with one turn of either role (services/worker/prompt.py) besides the prompts
# it serves. Gemma's own template renders no trace of a lone system prompt and raises on roles
# that do not alternate: found here, not after a fine-tuning run, at its first evaluation.
_WORKER_MESSAGE_SHAPES: tuple[tuple[str, ...], ...] = (
    ("system",),
    ("system", "user"),
    ("system", "assistant"),
    ("system", "user", "assistant", "user"),
)


def check_chat_template(tokenizer: Any, folder: Path) -> None:
    """Refuse a chat template that cannot render every message list the worker renders, each
    message's content once and in order."""
    from jinja2 import TemplateError

    from services.worker.engine.chat_prompt import ChatPromptEncoder, ChatTemplateError

    encoder = ChatPromptEncoder(tokenizer)
    for roles in _WORKER_MESSAGE_SHAPES:
        messages = [{"role": role, "content": f"{role} text"} for role in roles]
        try:
            encoder.template_pieces(messages)
        except (ChatTemplateError, TemplateError) as error:
            raise ModelSourceError(
                f"{folder}'s chat template cannot render the roles {list(roles)}, which the "
                f"worker's prompt builder renders: {error}. Make the template render a lone "
                "system prompt and any role after it (a system prompt with no user turn after "
                "it can become a turn of its own)."
            ) from error


def _first_id(value: int | list[int] | None) -> int | None:
    if isinstance(value, list):
        return value[0] if value else None
    return value


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


def _load_onnx(folder: Path) -> Any:
    import onnxruntime
    from optimum.onnxruntime import ORTModelForCausalLM

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ORTModelForCausalLM.from_pretrained(
        folder, use_cache=True, local_files_only=True, session_options=options
    )


def _tokens(model: Any, tokenizer: Any) -> list[list[int]]:
    return greedy_tokens(model, tokenizer, AGREEMENT_PROMPTS, AGREEMENT_NEW_TOKENS)


def _keep_last_position_logits(onnx_dir: Path) -> bool:
    """The prefill edit on ``onnx_dir``'s graph; a graph it does not fit keeps every position's
    logits (the engine reads the last one either way, only slower)."""
    try:
        return keep_last_position_logits(onnx_dir / ONNX_FILE)
    except UnsupportedGraphError as error:
        log.warning("prefill_logits_not_sliced", model_dir=str(onnx_dir), reason=str(error))
        return False


def _edit_graph(onnx_dir: Path) -> bool:
    """The graph edits a built model gets (each once): the prefill's last-position logits, and
    the past length from the mask, so the KV cache can be written in place
    (``training/kv_in_place.py``). True if either changed the file."""
    sliced = _keep_last_position_logits(onnx_dir)
    try:
        in_place = edit_model_file(onnx_dir / ONNX_FILE)
    except KvInPlaceError as error:
        log.warning("kv_in_place_not_possible", model_dir=str(onnx_dir), reason=str(error))
        in_place = False
    return sliced or in_place


def build_model(
    source: ModelSource,
    model_dir: Path,
    *,
    force: bool = False,
    quantizations: Sequence[Quantization] = (),
    progress: bool = True,
    attention_fusion: bool = True,
) -> ModelManifest:
    """Build ``source`` into ``model_dir`` (see the module docstring). ``attention_fusion``:
    whether each layer's attention becomes one GroupQueryAttention kernel (``False`` for an
    ONNX Runtime that cannot run it, see ``training/attention_fusion.py``)."""
    layout = ModelLayout(model_dir)
    manifest = layout.read_manifest()
    up_to_date = (
        manifest is not None
        and manifest.fingerprint == source.fingerprint
        and layout.onnx_dir.is_dir()
        and layout.pytorch_dir.is_dir()
    )
    if up_to_date and not force:
        assert manifest is not None  # up_to_date says so
        log.info("model_up_to_date", model_dir=str(model_dir), name=manifest.name)
        manifest = _upgrade_graph_edits(layout, manifest)
    else:
        manifest = _build_base(source, layout, progress, attention_fusion)
    assert manifest is not None
    for quantization in quantizations:
        if (
            quantization.value not in manifest.variants
            or force
            or built_by_an_earlier_recipe(layout.variant_dir(quantization.value), quantization)
        ):
            manifest = _build_variant(layout, manifest, quantization)
    return manifest


def _build_base(
    source: ModelSource, layout: ModelLayout, progress: bool, attention_fusion: bool
) -> ModelManifest:
    from optimum.exporters.onnx import main_export

    staging = ModelLayout(layout.root.with_name(layout.root.name + ".building"))
    exported = staging.root / "onnx-unfused"
    shutil.rmtree(staging.root, ignore_errors=True)
    staging.root.mkdir(parents=True)
    steps = tqdm(total=5, desc="model build", unit="step", disable=not progress)
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
                exported,
                task="text-generation-with-past",
                library_name="transformers",
                do_validation=False,  # the greedy-token check below is the stricter test
                local_files_only=True,
            )
        tokenizer.save_pretrained(exported)
        steps.update()

        steps.set_postfix_str("fusing the graph")
        reference = _tokens(model, tokenizer)
        fuse_graph(exported, staging.onnx_dir, model.config, attention=attention_fusion)
        _edit_graph(staging.onnx_dir)
        parity = agreement(reference, _tokens(_load_onnx(staging.onnx_dir), tokenizer))
        fused = parity.identical
        if not fused:
            log.warning("graph_fusion_changed_tokens", agreement=parity.token_agreement)
            shutil.rmtree(staging.onnx_dir)
            exported.rename(staging.onnx_dir)
            _edit_graph(staging.onnx_dir)
        steps.update()

        steps.set_postfix_str("checking ONNX Runtime against PyTorch")
        if not fused:
            parity = agreement(reference, _tokens(_load_onnx(staging.onnx_dir), tokenizer))
        shutil.rmtree(exported, ignore_errors=True)
        steps.update()
    except BaseException:
        steps.close()
        shutil.rmtree(staging.root, ignore_errors=True)
        raise
    steps.close()
    if not parity.identical:
        log.warning("model_parity_mismatch", source=str(source.folder), parity=parity.model_dump())

    manifest = ModelManifest(
        name=source.name,
        source=str(source.folder / source.gguf_file) if source.gguf_file else str(source.folder),
        fingerprint=source.fingerprint,
        built_at=datetime.now(UTC),
        parameters=sum(p.numel() for p in model.parameters()),
        parity=parity,
        graph_fused=fused,
    )
    staging.write_manifest(manifest)
    _swap_into_place(staging.root, layout.root)
    log.info("model_built", model_dir=str(layout.root), name=manifest.name, fused=fused)
    return manifest


def _build_variant(
    layout: ModelLayout, manifest: ModelManifest, quantization: Quantization
) -> ModelManifest:
    from transformers import AutoTokenizer

    target = layout.variant_dir(quantization.value)
    staging = target.with_name(target.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    log.info("quantizing", variant=quantization.value)
    quantize(layout.onnx_dir, staging, quantization)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)

    tokenizer = AutoTokenizer.from_pretrained(layout.onnx_dir, local_files_only=True)
    reference = _tokens(_load_onnx(layout.onnx_dir), tokenizer)
    variants = dict(manifest.variants)
    errors = dict(manifest.variant_errors)
    try:
        variants[quantization.value] = agreement(reference, _tokens(_load_onnx(target), tokenizer))
        errors.pop(quantization.value, None)
    except Exception as error:  # an fp16 model may have no CPU kernels for some operators
        variants.pop(quantization.value, None)
        errors[quantization.value] = f"not checked on this machine: {error}"[:500]
        log.warning("variant_unchecked", variant=quantization.value, error=str(error)[:200])
    manifest = manifest.model_copy(update={"variants": variants, "variant_errors": errors})
    layout.write_manifest(manifest)
    log.info(
        "variant_built", variant=quantization.value, agreement=variants.get(quantization.value)
    )
    return manifest


def _upgrade_graph_edits(layout: ModelLayout, manifest: ModelManifest) -> ModelManifest:
    """Give a model built before the graph edits (``_edit_graph``) the edits, in place, and
    check its tokens again: fp32 against PyTorch, the checked variants against fp32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    names = ["fp32", *manifest.variants, *manifest.variant_errors]
    edited = [
        name
        for name in dict.fromkeys(names)
        if layout.variant_dir(name).is_dir() and _edit_graph(layout.variant_dir(name))
    ]
    if not edited:
        return manifest
    log.info("model_upgraded", model_dir=str(layout.root), edit="graph_edits", variants=edited)
    tokenizer = AutoTokenizer.from_pretrained(layout.onnx_dir, local_files_only=True)
    fp32 = _tokens(_load_onnx(layout.onnx_dir), tokenizer)
    parity = manifest.parity
    if "fp32" in edited:
        reference_model = AutoModelForCausalLM.from_pretrained(
            layout.pytorch_dir, dtype=torch.float32, local_files_only=True
        )
        parity = agreement(_tokens(reference_model.eval(), tokenizer), fp32)
        if not parity.identical:
            log.warning(
                "model_parity_mismatch", model_dir=str(layout.root), parity=parity.model_dump()
            )
    variants = dict(manifest.variants)
    for name in edited:
        if name in variants:
            variants[name] = agreement(
                fp32, _tokens(_load_onnx(layout.variant_dir(name)), tokenizer)
            )
    manifest = manifest.model_copy(update={"parity": parity, "variants": variants})
    layout.write_manifest(manifest)
    return manifest


def _swap_into_place(staging: Path, target: Path) -> None:
    retired = target.with_name(target.name + ".old")
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        target.rename(retired)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
