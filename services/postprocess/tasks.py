"""Celery tasks of the post-processing service."""

from __future__ import annotations

from typing import Any

import httpx
from celery import Task
from celery.signals import worker_ready, worker_shutdown
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from services.postprocess.celery_app import app
from services.postprocess.delivery_sweeper import DeliverySweeper
from services.postprocess.results import record_failure, record_outcome
from services.postprocess.webhooks import attempt_delivery
from shared.config import get_settings
from shared.logs import get_logger
from shared.messaging.schemas import InferenceOutcome
from shared.messaging.topology import DELIVER_WEBHOOK_TASK, FINALIZE_JOB_TASK, WEBHOOK_QUEUE_NAME

log = get_logger(__name__)

# A result that keeps failing for another reason than the database is given this many tries
# before its job is failed: a poison outcome must not loop forever, nor leave its job running.
MAX_FINALIZE_RETRIES = 5

_http_client: httpx.Client | None = None
_sweeper: DeliverySweeper | None = None


def http_client() -> httpx.Client:
    """One connection pool per worker process, shared by its threads."""
    global _http_client
    if _http_client is None:
        settings = get_settings()
        _http_client = httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)
    return _http_client


def backoff_s(retries: int) -> float:
    return float(min(30, 2**retries))


def enqueue_delivery(delivery_id: str) -> None:
    deliver_webhook.apply_async(args=[delivery_id], queue=WEBHOOK_QUEUE_NAME)


@app.task(name=FINALIZE_JOB_TASK, bind=True, max_retries=None)
def finalize_job(self: Task, outcome: dict[str, Any]) -> None:
    """Store an inference outcome, then hand its webhook (if any) to the delivery queue."""
    try:
        parsed = InferenceOutcome.model_validate(outcome)
    except ValidationError as error:
        log.error("poison_outcome", outcome=str(outcome)[:500], error=str(error)[:500])
        return  # names no job that could be failed; retrying cannot help
    database_url = get_settings().database_url
    try:
        deliveries = record_outcome(database_url, parsed)
    except OperationalError as error:
        # the database is restarting: wait for it, however long
        raise self.retry(exc=error, countdown=backoff_s(self.request.retries)) from None
    except Exception as error:
        if self.request.retries < MAX_FINALIZE_RETRIES:
            raise self.retry(exc=error, countdown=backoff_s(self.request.retries)) from None
        log.exception("finalize_failed", job_id=str(parsed.job_id))
        deliveries = record_failure(
            database_url, parsed.job_id, "postprocess_error", f"storing the result failed: {error}"
        )
    for delivery_id in deliveries:
        # sent only after the transaction that created the delivery has committed
        enqueue_delivery(delivery_id)


@app.task(name=DELIVER_WEBHOOK_TASK, bind=True, max_retries=None)
def deliver_webhook(self: Task, delivery_id: str) -> None:
    """One delivery attempt; the sweeper starts the next one when it is due."""
    try:
        attempt_delivery(get_settings(), delivery_id, http_client())
    except OperationalError as error:
        raise self.retry(exc=error, countdown=backoff_s(self.request.retries)) from None


@worker_ready.connect
def _start_sweeper(**_kwargs: Any) -> None:
    global _sweeper
    _sweeper = DeliverySweeper(get_settings(), enqueue_delivery)
    _sweeper.start()


@worker_shutdown.connect
def _stop_sweeper(**_kwargs: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()
