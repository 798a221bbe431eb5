"""Request and response bodies of the key endpoints. A key's secret appears only in the answer
that issues it (``IssuedKeyView``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.api_keys import IssuedKey, KeyInfo, Scope

MAX_NAME_LENGTH = 200
MAX_NETWORKS = 100


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    scopes: list[Scope] | None = Field(None, min_length=1)
    """Default: every scope, as ``chatq keys create`` gives."""
    allowed_cidrs: list[str] = Field(default_factory=list, max_length=MAX_NETWORKS)
    rate_limit_per_s: float | None = Field(None, ge=0, le=1_000_000, allow_inf_nan=False)
    rate_limit_burst: int | None = Field(None, ge=1, le=10_000_000)

    @field_validator("name")
    @classmethod
    def _printable_name(cls, value: str) -> str:
        if not value.strip() or not value.isprintable():
            raise ValueError("a key name is printable text, not blank")
        return value.strip()


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    grace_s: float | None = Field(None, ge=0, le=30 * 86_400, allow_inf_nan=False)
    """How long the old key goes on working; default ``CHATQ_KEY_ROTATION_GRACE_S``."""


class KeyView(BaseModel):
    id: uuid.UUID
    object: str = "api_key"
    name: str
    tenant: str
    prefix: str
    scopes: list[str]
    allowed_cidrs: list[str]
    rate_limit_per_s: float | None
    rate_limit_burst: int | None
    status: str  # active, expiring (rotated, in its grace period), expired, revoked
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, info: KeyInfo) -> KeyView:
        return cls(
            id=info.id,
            name=info.name,
            tenant=info.tenant,
            prefix=info.prefix,
            scopes=info.scopes,
            allowed_cidrs=info.allowed_cidrs,
            rate_limit_per_s=info.rate_limit_per_s,
            rate_limit_burst=info.rate_limit_burst,
            status=info.status(),
            created_at=info.created_at,
            expires_at=info.expires_at,
            revoked_at=info.revoked_at,
        )


class IssuedKeyView(KeyView):
    key: str  # shown once: only its digest is stored
    webhook_secret: str

    @classmethod
    def issued(cls, issued: IssuedKey, info: KeyInfo) -> IssuedKeyView:
        return cls(
            **KeyView.of(info).model_dump(), key=issued.key, webhook_secret=issued.webhook_secret
        )
