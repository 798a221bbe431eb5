"""Model versions: chatq model folders registered by name, one of them active.

The active version is the one activated last; with none active, workers serve
``CHATQ_MODEL_DIR`` under its manifest's name. Workers look at the active version every
``CHATQ_MODEL_REFRESH_INTERVAL_S`` and switch between batches (services/worker/model_switch.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from shared.db.engine import session_scope
from shared.db.models import ModelVersion, utcnow
from shared.model_layout import ModelLayout, ModelNotBuiltError

VERSION_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_VERSION_NAME = re.compile(VERSION_NAME_PATTERN)


class ModelVersionError(ValueError):
    pass


class UnknownModelVersionError(LookupError):
    pass


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    path: Path
    base: str | None
    card: dict[str, Any]
    created_at: datetime
    activated_at: datetime | None
    active: bool

    @classmethod
    def of(cls, row: ModelVersion, active: bool) -> ModelVersionInfo:
        return cls(
            row.name, Path(row.path), row.base, dict(row.card), row.created_at,
            row.activated_at, active,
        )  # fmt: skip


def check_model_folder(path: Path) -> dict[str, Any]:
    """The manifest of a built chatq model folder, or an error that says what to do."""
    layout = ModelLayout(path)
    try:
        manifest = layout.require_manifest()
    except ModelNotBuiltError as error:
        raise ModelVersionError(str(error)) from None
    if not layout.onnx_dir.is_dir():
        raise ModelVersionError(f"{path} has no onnx/ folder: build it with `chatq model build`")
    return manifest.model_dump(mode="json")


def check_version_name(name: str) -> None:
    if not _VERSION_NAME.fullmatch(name):
        raise ModelVersionError(
            f"bad version name {name!r}: letters, digits, '.', '_' or '-', at most 128, "
            "starting with a letter or digit"
        )


def register_model_version(
    database_url: str,
    name: str,
    path: Path,
    *,
    base: str | None = None,
    card: dict[str, Any] | None = None,
) -> ModelVersionInfo:
    check_version_name(name)
    path = path.expanduser().resolve()
    manifest = check_model_folder(path)
    row = ModelVersion(
        name=name,
        path=str(path),
        base=base or manifest.get("source"),
        card={"manifest": manifest, **(card or {})},
        created_at=utcnow(),
    )
    try:
        with session_scope(database_url) as session:
            session.add(row)
            session.flush()
            return ModelVersionInfo.of(row, active=False)
    except IntegrityError:
        raise ModelVersionError(f"a model version named {name!r} exists already") from None


def _active_row(session: Any) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion)
        .where(ModelVersion.activated_at.is_not(None))
        .order_by(ModelVersion.activated_at.desc(), ModelVersion.name)
        .limit(1)
    )


def list_model_versions(database_url: str) -> list[ModelVersionInfo]:
    with session_scope(database_url) as session:
        active = _active_row(session)
        rows = session.scalars(select(ModelVersion).order_by(ModelVersion.created_at)).all()
        return [ModelVersionInfo.of(row, row is active) for row in rows]


def active_model_version(database_url: str) -> ModelVersionInfo | None:
    with session_scope(database_url) as session:
        row = _active_row(session)
        return ModelVersionInfo.of(row, active=True) if row is not None else None


def activate_model_version(database_url: str, name: str) -> ModelVersionInfo:
    """Make ``name`` the version workers serve (its folder is checked first)."""
    with session_scope(database_url) as session:
        row = session.scalar(select(ModelVersion).where(ModelVersion.name == name))
        if row is None:
            raise UnknownModelVersionError(f"no model version {name!r} (see chatq models list)")
        check_model_folder(Path(row.path))
        now = utcnow()
        session.execute(
            update(ModelVersion).where(ModelVersion.id != row.id).values(activated_at=None)
        )
        row.activated_at = now
        session.flush()
        return ModelVersionInfo.of(row, active=True)


def deactivate_model_versions(database_url: str) -> None:
    """Back to CHATQ_MODEL_DIR."""
    with session_scope(database_url) as session:
        session.execute(update(ModelVersion).values(activated_at=None))
