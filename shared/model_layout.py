"""What ``chatq model build`` writes into a model folder, and how the worker finds it.

<model_dir>/pytorch/         Hugging Face folder, fp32 (the reference engine, re-exports)
<model_dir>/onnx/            ONNX export with KV cache + tokenizer (the production engine)
<model_dir>/chatq-model.json manifest: what was built from what, and how it checked out
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

MANIFEST_NAME = "chatq-model.json"


class ModelNotBuiltError(RuntimeError):
    pass


class TokenAgreement(BaseModel):
    """How one model's greedy tokens compare with a reference's on a fixed prompt set."""

    token_agreement: float  # share of positions with the same token
    identical_sequences: int
    prompts: int
    new_tokens: int

    @property
    def identical(self) -> bool:
        return self.identical_sequences == self.prompts


class ModelManifest(BaseModel):
    name: str
    source: str  # a GGUF file or a Hugging Face folder
    fingerprint: str  # of the source, so a rebuild happens only when it changed
    built_at: datetime
    parameters: int
    parity: TokenAgreement  # ONNX Runtime fp32 against PyTorch
    graph_fused: bool  # ONNX Runtime's transformer fusions applied (only if tokens unchanged)
    variants: dict[str, TokenAgreement] = {}  # quantised variant → agreement with fp32
    variant_errors: dict[str, str] = {}  # variants that could not be checked here, and why


class ModelLayout:
    def __init__(self, model_dir: Path) -> None:
        self.root = model_dir

    @property
    def pytorch_dir(self) -> Path:
        return self.root / "pytorch"

    @property
    def onnx_dir(self) -> Path:
        return self.root / "onnx"

    def variant_dir(self, variant: str) -> Path:
        """``fp32`` is ``onnx/``; a quantised variant is ``onnx-<variant>/``."""
        return self.onnx_dir if variant == "fp32" else self.root / f"onnx-{variant}"

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    def read_manifest(self) -> ModelManifest | None:
        if not self.manifest_path.is_file():
            return None
        try:
            return ModelManifest.model_validate_json(self.manifest_path.read_text())
        except ValidationError:
            return None  # written by an older chatq: the folder needs rebuilding

    def write_manifest(self, manifest: ModelManifest) -> None:
        partial = self.manifest_path.with_suffix(".partial")
        partial.write_text(manifest.model_dump_json(indent=2))
        partial.replace(self.manifest_path)

    def require_manifest(self) -> ModelManifest:
        manifest = self.read_manifest()
        if manifest is None or not self.onnx_dir.is_dir():
            raise ModelNotBuiltError(
                f"No model built in {self.root}. Run `chatq model build` "
                "(or point CHATQ_MODEL_DIR at a folder it built)."
            )
        return manifest
