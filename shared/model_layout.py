"""What ``chatq model build`` writes into a model folder, and how the worker finds it.

<model_dir>/pytorch/         Hugging Face folder, fp32 (the reference engine, re-exports)
<model_dir>/onnx/            ONNX export with KV cache + tokenizer (the production engine)
<model_dir>/chatq-model.json manifest: what was built from what, and how it checked out
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

MANIFEST_NAME = "chatq-model.json"


class ModelNotBuiltError(RuntimeError):
    pass


class ModelManifest(BaseModel):
    name: str
    source: str  # a GGUF file or a Hugging Face folder
    fingerprint: str  # of the source, so a rebuild happens only when it changed
    built_at: datetime
    parameters: int
    parity_tokens_identical: bool  # ONNX Runtime and PyTorch gave the same greedy tokens
    parity_prompt_count: int


class ModelLayout:
    def __init__(self, model_dir: Path) -> None:
        self.root = model_dir

    @property
    def pytorch_dir(self) -> Path:
        return self.root / "pytorch"

    @property
    def onnx_dir(self) -> Path:
        return self.root / "onnx"

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    def read_manifest(self) -> ModelManifest | None:
        if not self.manifest_path.is_file():
            return None
        return ModelManifest.model_validate_json(self.manifest_path.read_text())

    def require_manifest(self) -> ModelManifest:
        manifest = self.read_manifest()
        if manifest is None or not self.onnx_dir.is_dir():
            raise ModelNotBuiltError(
                f"No model built in {self.root}. Run `chatq model build` "
                "(or point CHATQ_MODEL_DIR at a folder it built)."
            )
        return manifest
