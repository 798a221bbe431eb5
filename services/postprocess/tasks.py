"""Celery tasks of the post-processing service."""

from __future__ import annotations

from typing import Any

import httpx
from celery import Task
from sqlalchemy.exc import OperationalError

from services.postprocess.celery_app import app
from services.postprocess.results import record_outcome
from services.postprocess.webhooks import attempt_delivery
from shared.config import get_settings
from shared.messaging.schemas import InferenceOutcome
from shared.messaging.topology import DELIVER_WEBHOOK_TASK, FINALIZE_JOB_TASK, WEBHOOK_QUEUE_NAME

_http_client: httpx.Client | None = None


def http_client() -> httpx.Client:
    """One connection pool per worker process, shared by its threads."""
    global _http_client
    if _http_client is None:
        settings = get_settings()
        _http_client = httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)
    return _http_client


@app.task(
    name=FINALIZE_JOB_TASK,
    bind=True,
    # The database may be restarting: retry with backoff rather than drop the result.
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=None,
)
def finalize_job(self: Task, outcome: dict[str, Any]) -> None:
    """Store an inference outcome, then hand its webhook (if any) to the delivery queue."""
    parsed = InferenceOutcome.model_validate(outcome)
    for delivery_id in record_outcome(get_settings().database_url, parsed):
        # Sent only after the transaction that created the delivery has committed.
        deliver_webhook.apply_async(args=[delivery_id], queue=WEBHOOK_QUEUE_NAME)


@app.task(
    name=DELIVER_WEBHOOK_TASK,
    bind=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=None,
)
def deliver_webhook(self: Task, delivery_id: str) -> None:
    """One delivery attempt; retried on the webhook schedule until delivered or dead."""
    attempt = attempt_delivery(get_settings(), delivery_id, http_client())
    if attempt.retry_in_s is not None:
        raise self.retry(countdown=attempt.retry_in_s, max_retries=None)
