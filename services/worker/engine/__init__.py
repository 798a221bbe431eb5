"""Engines: ONNX Runtime for production, PyTorch as the reference."""

from __future__ import annotations

from services.worker.engine.base import (
    ContinuousEngine,
    Engine,
    GenerationError,
    GenerationRequest,
    GenerationResult,
)
from shared.config import EngineKind, Settings
from shared.model_layout import ModelLayout, ModelNotBuiltError

__all__ = [
    "ContinuousEngine",
    "Engine",
    "GenerationError",
    "GenerationRequest",
    "GenerationResult",
    "load_engine",
]


def load_engine(settings: Settings) -> Engine:
    """The engine the settings ask for, on the model in ``settings.model_dir``."""
    layout = ModelLayout(settings.model_dir)
    manifest = layout.require_manifest()
    if settings.engine is EngineKind.TORCH:
        from services.worker.engine.pytorch import load_pytorch_engine

        return load_pytorch_engine(
            layout.pytorch_dir, settings.device, settings.intra_op_threads, manifest.name
        )
    from services.worker.engine.onnx_runtime import load_onnx_engine

    variant = settings.model_variant.value
    onnx_dir = layout.variant_dir(variant)
    if not onnx_dir.is_dir():
        raise ModelNotBuiltError(
            f"CHATQ_MODEL_VARIANT={variant}, but {onnx_dir} does not exist: run "
            f"`chatq model build --quantize {variant}` or set CHATQ_MODEL_VARIANT=fp32."
        )
    return load_onnx_engine(
        onnx_dir, settings.device, settings.intra_op_threads, manifest.name, variant
    )
