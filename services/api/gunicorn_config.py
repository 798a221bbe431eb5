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

logger_class = "services.api.gunicorn_worker.ApiLogger"

# gunicorn's own lines (master and workers: starting, booting, timeouts) in chatq's format:
# one JSON object per line like every other line of the stack, not plain text among them. Its
# access lines are dropped: the API writes its own (services/api/request_log.py), with the
# request id and the time taken.
_LEVEL = get_settings().log_level.upper()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"chatq": {"()": "shared.logs.stdlib_formatter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "chatq",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"level": _LEVEL, "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"handlers": ["stderr"], "level": _LEVEL, "propagate": False},
        "gunicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
    },
}


def child_exit(_server: Any, worker: Any) -> None:
    from shared.metrics import process_exited

    process_exited(worker.pid)


# A keep-alive connection stays with the API process that accepted it. Clients open their
# pools at once, when one process may be busy and the other wins most accepts: 16 connections
# split 20 % / 74 % of a core and the submit rate fell from ~460/s to ~370/s. Closing a
# connection after this many requests (nginx's keepalive_requests) lets its client reconnect,
# and the less busy process, waiting in accept more often, takes it: the load evens out.
KEEPALIVE_REQUESTS = 30


def pre_request(_worker: Any, request: Any) -> None:
    if request.req_number >= KEEPALIVE_REQUESTS:
        request.must_close = True
