"""The post-processing Celery application (``celery -A services.postprocess.celery_app``)."""

from __future__ import annotations

from typing import Any

from celery.signals import setup_logging, worker_init

from shared import metrics
from shared.config import get_settings
from shared.logs import configure_logging
from shared.messaging.celery_config import make_celery

app = make_celery(get_settings(), "chatq-postprocess")
app.conf.include = ["services.postprocess.tasks"]


@setup_logging.connect
def _configure_logging(**_kwargs: Any) -> None:
    # Celery's own logging setup is replaced by chatq's structured logs.
    configure_logging(get_settings(), "postprocess")


@worker_init.connect
def _serve_metrics(**_kwargs: Any) -> None:
    # a pool of threads: the process's one registry holds what every task observed
    settings = get_settings()
    metrics.serve(settings.metrics_port, settings.metrics_host, "postprocess")
