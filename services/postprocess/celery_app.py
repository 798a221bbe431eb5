"""The post-processing Celery application (``celery -A services.postprocess.celery_app``)."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from celery.exceptions import CPendingDeprecationWarning
from celery.signals import (
    celeryd_after_setup,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_ready,
    worker_shutdown,
)
from celery.worker.state import active_requests, reserved_requests
from kombu import Connection

from services.postprocess.stall_watchdog import EXIT_STALLED, Stall, StallWatchdog, Work
from shared import metrics
from shared.config import get_settings
from shared.logs import configure_logging, get_logger
from shared.messaging.broker import broker_connection
from shared.messaging.celery_config import make_celery
from shared.messaging.topology import queue_depth

log = get_logger(__name__)

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


_watchdog: StallWatchdog | None = None


class _ConsumedQueues:
    """Messages ready in the queues this worker consumes, on a connection of its own."""

    def __init__(self, consumer: Any) -> None:
        self.queues = list(consumer.app.amqp.queues.consume_from.values())
        self._connection: Connection | None = None

    def ready(self) -> int | None:
        try:
            if self._connection is None:
                self._connection = broker_connection(get_settings())
                self._connection.ensure_connection(max_retries=1)
            return sum(queue_depth(self._connection, queue) for queue in self.queues)
        except Exception as error:  # the broker is away: no evidence of a stall
            log.info("stall_check_broker_unreachable", error=repr(error))
            if self._connection is not None:
                self._connection.release()
                self._connection = None
            return None


@worker_ready.connect
def _start_stall_watchdog(sender: Any = None, **_kwargs: Any) -> None:
    global _watchdog
    stall_after_s = get_settings().stall_timeout_s
    if not stall_after_s or sender is None:
        return
    consumed = _ConsumedQueues(sender)
    _watchdog = StallWatchdog(
        stall_after_s, lambda: Work(len(reserved_requests), consumed.ready()), _exit_stalled
    )
    _watchdog.start()


@worker_shutdown.connect
def _stop_stall_watchdog(**_kwargs: Any) -> None:
    if _watchdog is not None:
        _watchdog.stop()


@task_prerun.connect
@task_postrun.connect
def _task_progress(**_kwargs: Any) -> None:
    if _watchdog is not None:
        _watchdog.progress()


def _exit_stalled(stall: Stall) -> None:
    log.error(
        "worker_stalled",
        seconds=round(stall.seconds, 1),
        held=stall.work.held,
        running=len(active_requests),
        ready=stall.work.ready,
        action="exiting: the supervisor starts the worker again, and the tasks it held go "
        "back to the queue",
    )
    sys.stdout.flush()
    sys.stderr.flush()
    # Not a warm shutdown: it would wait for the threads that are stuck.
    os._exit(EXIT_STALLED)
