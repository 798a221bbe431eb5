"""The post-processing Celery application (``celery -A services.postprocess.celery_app``)."""

from __future__ import annotations

import warnings
from typing import Any

from celery.exceptions import CPendingDeprecationWarning
from celery.signals import celeryd_after_setup, setup_logging, worker_init

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


@celeryd_after_setup.connect
def _quiet_cancel_warning(**_kwargs: Any) -> None:
    # Celery warns at every lost connection that Celery 6 will cancel running tasks then; the
    # setting says what this service wants (celery_config), so it is only noise. Added after
    # Celery's logging set-up, which puts "always" in front of its warnings' filters.
    warnings.filterwarnings(
        "ignore", r"\s*In Celery 5\.1 we introduced", CPendingDeprecationWarning, "celery"
    )


@worker_init.connect
def _serve_metrics(**_kwargs: Any) -> None:
    # a pool of threads: the process's one registry holds what every task observed
    settings = get_settings()
    metrics.serve(settings.metrics_port, settings.metrics_host, "postprocess")
