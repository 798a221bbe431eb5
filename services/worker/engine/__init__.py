"""Engines: ONNX Runtime for production, PyTorch as the reference."""

from __future__ import annotations

from pathlib import Path

from services.worker.engine.base import (
    Engine,
    GenerationError,
    GenerationRequest,
    GenerationResult,
)
from services.worker.engine.variant_choice import choose_variant
from shared.config import EngineKind, Settings
from shared.logs import get_logger
from shared.model_layout import ModelLayout, ModelNotBuiltError

log = get_logger(__name__)

__all__ = [
    "Engine",
    "GenerationError",
    "GenerationRequest",
    "GenerationResult",
    "load_engine",
]


def load_engine(
    settings: Settings,
    model_dir: Path | None = None,
    *,
    label: str | None = None,
    version: str | None = None,
) -> Engine:
    """The engine the settings ask for, on the model in ``model_dir`` (default
    ``settings.model_dir``), named ``label`` (default: its manifest's name) and, when it is a
    registered model version, ``version``."""
    layout = ModelLayout(model_dir or settings.model_dir)
    manifest = layout.require_manifest()
    name = label or manifest.name
    engine: Engine
    if settings.engine is EngineKind.TORCH:
        from services.worker.engine.pytorch import load_pytorch_engine

        engine = load_pytorch_engine(
            layout.pytorch_dir, settings.device, settings.intra_op_threads, name
        )
    else:
        engine = _load_onnx(settings, layout, name)
    engine.info = engine.info.model_copy(update={"version": version})
    return engine


def _load_onnx(settings: Settings, layout: ModelLayout, name: str) -> Engine:
    from services.worker.engine.onnx_runtime import load_onnx_engine

    choice = choose_variant(settings, layout)
    log.info("model_variant_chosen", variant=choice.variant, reason=choice.reason)
    variant = choice.variant
    onnx_dir = layout.variant_dir(variant)
    if not onnx_dir.is_dir():
        raise ModelNotBuiltError(
            f"CHATQ_MODEL_VARIANT={variant}, but {onnx_dir} does not exist: run "
            f"`chatq model build --quantize {variant}` or set CHATQ_MODEL_VARIANT=fp32."
        )
    return load_onnx_engine(
        onnx_dir,
        settings.device,
        settings.intra_op_threads,
        name,
        variant,
        prefix_cache_mb=settings.prefix_cache_mb,
        spinning=settings.ort_thread_spinning,
    )
