"""Response bodies of the model-version endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.model_versions import ModelVersionInfo


class ModelVersionView(BaseModel):
    object: str = "model_version"
    name: str
    path: str
    base: str | None
    active: bool
    created_at: datetime
    activated_at: datetime | None
    card: dict[str, Any]  # the training card and the build manifest

    @classmethod
    def of(cls, info: ModelVersionInfo) -> ModelVersionView:
        return cls(
            name=info.name,
            path=str(info.path),
            base=info.base,
            active=info.active,
            created_at=info.created_at,
            activated_at=info.activated_at,
            card=info.card,
        )


class ModelVersionList(BaseModel):
    object: str = "list"
    data: list[ModelVersionView]
    default_model_dir: str
    """What workers serve while no version is active (CHATQ_MODEL_DIR)."""
