"""Celery tasks of the post-processing service.

``finalize_job`` (queue ``chat.postprocess``) stores results; ``deliver_webhook`` (queue
``chat.webhooks``) calls receivers. The stack runs them in separate worker processes, so a slow
receiver holds only a delivery thread, never one that stores results.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task
from celery.signals import worker_ready, worker_shutdown
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from services.postprocess.celery_app import app
from services.postprocess.delivery_sweeper import DeliverySweeper
from services.postprocess.purge import PurgeSchedule
from services.postprocess.results import record_failure, record_outcome
from services.postprocess.webhooks import attempt_delivery
from shared.config import get_settings
from shared.logs import get_logger
from shared.messaging.schemas import InferenceOutcome
from shared.messaging.topology import DELIVER_WEBHOOK_TASK, FINALIZE_JOB_TASK, WEBHOOK_QUEUE_NAME
from shared.webhook_client import WebhookClient

log = get_logger(__name__)

# A result that keeps failing for another reason than the database is given this many retries
# before its job is failed: a poison outcome must not loop forever, nor leave its job running.
MAX_FINALIZE_RETRIES = 5
# Celery retries with exponential backoff, full jitter, at most this many seconds apart; with
# max_retries=None a database that is restarting is waited for however long it takes.
RETRY_BACKOFF_MAX_S = 30

_webhook_client: WebhookClient | None = None
_sweeper: DeliverySweeper | None = None


def webhook_client() -> WebhookClient:
    """One per worker process, shared by its threads (it holds the TLS context)."""
    global _webhook_client
    if _webhook_client is None:
        _webhook_client = WebhookClient()
    return _webhook_client


class OutcomeNotStored(Exception):
    """Storing an outcome failed for another reason than the database; retried a few times."""


def enqueue_delivery(delivery_id: str) -> None:
    deliver_webhook.apply_async(args=[delivery_id], queue=WEBHOOK_QUEUE_NAME)


@app.task(
    name=FINALIZE_JOB_TASK,
    bind=True,
    autoretry_for=(OperationalError, OutcomeNotStored),
    max_retries=None,
    retry_backoff=True,
    retry_backoff_max=RETRY_BACKOFF_MAX_S,
    retry_jitter=True,
)
def finalize_job(self: Task, outcome: dict[str, Any]) -> None:
    """Store an inference outcome, then hand its webhook (if any) to the delivery queue.

    Celery retries it (``autoretry_for``): after a database error (it is restarting) however
    long; after another error ``MAX_FINALIZE_RETRIES`` times, and then the job fails with
    ``postprocess_error`` instead. Failing it or handing off its webhooks is retried only after
    a database error (the delivery sweeper starts deliveries whose hand-off was lost).
    """
    try:
        parsed = InferenceOutcome.model_validate(outcome)
    except ValidationError as error:
        log.error("poison_outcome", outcome=str(outcome)[:500], error=str(error)[:500])
        return  # names no job that could be failed; retrying cannot help
    with structlog.contextvars.bound_contextvars(job_id=str(parsed.job_id)):
        _finalize(self, parsed)


def _finalize(task: Task, parsed: InferenceOutcome) -> None:
    settings = get_settings()
    try:
        deliveries = record_outcome(settings, parsed)
    except OperationalError:
        raise  # retried however long
    except Exception as error:
        if task.request.retries < MAX_FINALIZE_RETRIES:
            raise OutcomeNotStored(repr(error)) from error
        log.exception("finalize_failed", job_id=str(parsed.job_id))
        deliveries = record_failure(
            settings, parsed.job_id, "postprocess_error", f"storing the result failed: {error}"
        )
    for delivery_id in deliveries:
        # sent only after the transaction that created the delivery has committed
        enqueue_delivery(delivery_id)


@app.task(
    name=DELIVER_WEBHOOK_TASK,
    autoretry_for=(OperationalError,),
    max_retries=None,
    retry_backoff=True,
    retry_backoff_max=RETRY_BACKOFF_MAX_S,
    retry_jitter=True,
)
def deliver_webhook(delivery_id: str) -> None:
    """One delivery attempt; the sweeper starts the next one when it is due. Celery retries
    it while the database is away (an HTTP failure is the delivery's own schedule)."""
    attempt_delivery(get_settings(), delivery_id, webhook_client())


def consumes_webhooks(consumer: Any) -> bool:
    """Whether this worker takes deliveries (``--queues``; none given: every queue)."""
    selected = consumer.app.amqp.queues.consume_from
    return not selected or WEBHOOK_QUEUE_NAME in selected


@worker_ready.connect
def _start_sweeper(sender: Any = None, **_kwargs: Any) -> None:
    # the sweeper belongs with the deliveries it starts, not with the storing of results
    global _sweeper
    if sender is not None and not consumes_webhooks(sender):
        return
    _sweeper = DeliverySweeper(get_settings(), enqueue_delivery)
    _sweeper.start()


@worker_shutdown.connect
def _stop_sweeper(**_kwargs: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()


_purge: PurgeSchedule | None = None


@worker_ready.connect
def _start_purge(**_kwargs: Any) -> None:
    global _purge
    _purge = PurgeSchedule(get_settings())
    _purge.start()


@worker_shutdown.connect
def _stop_purge(**_kwargs: Any) -> None:
    if _purge is not None:
        _purge.stop()
