"""gunicorn's settings module (``-c python:services.api.gunicorn_config``), read by the master
before it forks the API processes.

It prepares prometheus-client's multiprocess mode (see shared/metrics.py): the directory where
each API process writes its values is named in the environment before any process imports the
client, and emptied, so that a restarted API does not add up the counts of its previous life.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from shared.config import get_settings

# Not imported from shared.metrics: prometheus-client picks its mode when first imported, and
# the processes forked from here inherit that choice, so it must not load before the variable
# is set (shared/metrics.py checks the same name).
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _prepare_metrics_directory() -> None:
    if os.environ.get(MULTIPROCESS_ENV):
        directory = os.environ[MULTIPROCESS_ENV]
    else:
        settings = get_settings()
        directory = str(settings.data_dir / f"metrics-api-{settings.api_port}")
        os.environ[MULTIPROCESS_ENV] = directory
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, mode=0o700, exist_ok=True)


_prepare_metrics_directory()


def child_exit(_server: Any, worker: Any) -> None:
    from shared.metrics import process_exited

    process_exited(worker.pid)
