"""Serving the active model version, and switching to a newly activated one without losing a
job.

A background thread (``PeriodicWork``) looks at the active version every
``CHATQ_MODEL_REFRESH_INTERVAL_S``. When it changed, the thread loads the new engine itself, so
the engine thread goes on generating meanwhile, and leaves it ready. The engine thread then
admits nothing new, lets the sequences decoding now finish on the old engine, and takes the new
one between two steps (``EngineLoop``): jobs already prepared wait a moment in the ready queue,
none is dropped or failed, and every outcome names the version that generated it.

A version that cannot be loaded (folder gone, not built) is logged once and skipped until it is
activated again; the worker goes on with the model it has.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from services.worker.engine import Engine
from shared.config import Settings
from shared.logs import get_logger
from shared.model_layout import ModelLayout
from shared.model_versions import active_model_version
from shared.periodic import PeriodicWork

log = get_logger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """What a worker serves: a registered version, or CHATQ_MODEL_DIR when none is active."""

    label: str  # the version's name, or the name in CHATQ_MODEL_DIR's manifest
    model_dir: Path
    version: str | None  # None: CHATQ_MODEL_DIR, no version active
    activated_at: datetime | None = None


def wanted_model(settings: Settings) -> ServedModel:
    """The active version, or CHATQ_MODEL_DIR (raises when the database cannot be read)."""
    version = active_model_version(settings.database_url)
    if version is not None:
        return ServedModel(version.name, version.path, version.name, version.activated_at)
    manifest = ModelLayout(settings.model_dir).require_manifest()
    return ServedModel(manifest.name, settings.model_dir, None)


def starting_model(settings: Settings) -> ServedModel:
    """What a starting worker serves: ``wanted_model``, or CHATQ_MODEL_DIR while the database
    cannot say (the switcher looks again once it can)."""
    try:
        return wanted_model(settings)
    except Exception as error:
        log.warning("model_version_unreadable", error=repr(error))
        manifest = ModelLayout(settings.model_dir).require_manifest()
        return ServedModel(manifest.name, settings.model_dir, None)


def load_starting_engine(
    settings: Settings, wanted: ServedModel, load: Callable[[ServedModel], Engine]
) -> tuple[Engine, ServedModel, ServedModel | None]:
    """The engine of the active version; if this host cannot load it (its folder missing here,
    say), CHATQ_MODEL_DIR's, so that a worker always starts. Returns the engine, what it
    serves, and the version that failed (the switcher does not retry it until it is activated
    again)."""
    try:
        return load(wanted), wanted, None
    except Exception as error:
        if wanted.version is None:
            raise  # CHATQ_MODEL_DIR itself: nothing to fall back on
        log.error(
            "model_version_unloadable",
            version=wanted.label,
            model_dir=str(wanted.model_dir),
            error=str(error)[:500],
            serving="CHATQ_MODEL_DIR",
        )
        manifest = ModelLayout(settings.model_dir).require_manifest()
        fallback = ServedModel(manifest.name, settings.model_dir, None)
        return load(fallback), fallback, wanted


class ModelSwitcher(PeriodicWork):
    name = "model_switch"

    def __init__(
        self,
        settings: Settings,
        serving: ServedModel,
        load: Callable[[ServedModel], Engine],
        *,
        interval_s: float | None = None,
        wanted: Callable[[], ServedModel] | None = None,
        failed: ServedModel | None = None,
    ) -> None:
        super().__init__(interval_s or settings.model_refresh_interval_s)
        self.serving = serving
        self._load = load
        self._wanted = wanted or (lambda: wanted_model(settings))
        self._lock = threading.Lock()
        self._ready: tuple[Engine, ServedModel] | None = None
        self._failed = failed  # a version that would not load (at start, say): not retried

    @property
    def pending(self) -> bool:
        """A new engine is loaded and waits for the engine thread to take it."""
        return self._ready is not None

    def take(self) -> Engine | None:
        """The loaded engine, for the engine thread (once); from now on it is what is served."""
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is None:
            return None
        engine, self.serving = ready
        return engine

    def run_once(self) -> int:
        wanted = self._wanted()
        if _same_model(wanted, self.serving):
            with self._lock:
                self._ready = None  # activated back before the engine thread took the other
            return 0
        if wanted == self._failed:
            return 0  # a failed version is tried again once it is activated again
        with self._lock:
            if self._ready is not None and _same_model(wanted, self._ready[1]):
                return 0
        log.info("model_switch_loading", version=wanted.label, model_dir=str(wanted.model_dir))
        try:
            engine = self._load(wanted)
        except Exception as error:
            self._failed = wanted
            log.error(
                "model_switch_failed",
                version=wanted.label,
                model_dir=str(wanted.model_dir),
                error=str(error)[:500],
                serving=self.serving.label,
            )
            return 0
        with self._lock:
            self._ready = (engine, wanted)
        log.info("model_switch_ready", version=wanted.label, serving=self.serving.label)
        return 1


def _same_model(one: ServedModel, other: ServedModel) -> bool:
    return (one.version, one.model_dir) == (other.version, other.model_dir)
