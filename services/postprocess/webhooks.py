"""Webhook delivery: one signed HTTP attempt, recorded, and what to do next.

Standard Webhooks: ``webhook-id`` (fixed for the event, so receivers can deduplicate),
``webhook-timestamp`` and ``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 of
``id.timestamp.body`` with the API key's ``whsec_`` secret), signed by the ``standardwebhooks``
package. A 2xx answer delivers when its body (the first 64 KiB of it at most) arrives within the
deadline; 410 Gone stops for good, and so does a URL that may not be called; anything else
(another status, a network error, the deadline, any exception at all) is a failed attempt, retried
on the configured schedule, and after its last step the delivery is dead. The schedule lives in
the database (``next_attempt_at``): the delivery sweeper starts attempts when they are due, so a
retry hours away holds no broker message (RabbitMQ's consumer timeout) and survives any restart.

One attempt, name resolution included, ends within ``CHATQ_WEBHOOK_TIMEOUT_S`` however slowly the
receiver answers (``shared.webhook_client``), and connects only to the addresses just checked.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpcore
import structlog
from sqlalchemy import func, select
from standardwebhooks import Webhook

from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import (
    ApiKey,
    DeliveryStatus,
    Job,
    WebhookAttempt,
    WebhookDelivery,
    utcnow,
)
from shared.logs import get_logger
from shared.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_LATENCY
from shared.webhook_client import WebhookClient
from shared.webhook_urls import UnresolvableHostError, WebhookUrlError, resolve_webhook_target

log = get_logger(__name__)

USER_AGENT = "chatq-webhooks/1"
REFUSED = "refused: "  # an error starting so is final: the URL may not be called at all
MAX_ERROR_LENGTH = 500


@dataclass(frozen=True)
class AttemptOutcome:
    # when the next attempt is due (the delivery sweeper starts it); None: nothing more to do
    retry_in_s: float | None


@dataclass(frozen=True)
class _Pending:
    delivery_id: str
    subject: dict[str, str]  # what the event is about, for the log lines: job_id or batch_id
    url: str
    payload: dict[str, Any]
    secret: str
    attempt_number: int


@dataclass(frozen=True)
class _Result:
    started: datetime
    duration_ms: float
    status_code: int | None
    error: str | None


def attempt_delivery(settings: Settings, delivery_id: str, client: WebhookClient) -> AttemptOutcome:
    pending = _load(settings, delivery_id)
    if pending is None:
        return AttemptOutcome(None)
    with structlog.contextvars.bound_contextvars(**pending.subject):
        return _record(settings, pending, _send(settings, pending, client))


def _load(settings: Settings, delivery_id: str) -> _Pending | None:
    with session_scope(settings.database_url) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status is not DeliveryStatus.PENDING:
            return None
        earlier_attempts = session.scalar(
            select(func.count()).where(WebhookAttempt.delivery_id == delivery_id)
        )
        secret = session.scalar(
            select(ApiKey.webhook_secret).where(ApiKey.id == delivery.api_key_id)
        )
        if secret is None:
            return None
        if delivery.job_id is None:  # a batch's event: it holds no texts of anyone's
            subject, payload = {"batch_id": str(delivery.batch_id)}, delivery.payload
        else:
            subject = {"job_id": str(delivery.job_id)}
            payload = _with_clear_texts(delivery.payload, session.get(Job, delivery.job_id))
        return _Pending(
            delivery.id,
            subject,
            delivery.url,
            payload,
            secret,
            (earlier_attempts or 0) + 1,
        )


def _with_clear_texts(payload: dict[str, Any], job: Job | None) -> dict[str, Any]:
    """The stored payload is anonymised; while the job still holds its texts in clear (within
    CHATQ_RESULT_RETENTION_S) the backend gets those, as a poll would."""
    if job is None or job.redacted_at is not None:
        return payload
    data = payload.get("data") or {}
    return {**payload, "data": {**data, "query": job.query, "response": job.response}}


def _send(settings: Settings, pending: _Pending, client: WebhookClient) -> _Result:
    """One attempt; whatever goes wrong in it becomes the attempt's error, never an exception."""
    started = utcnow()
    clock = time.monotonic()
    deadline = clock + settings.webhook_timeout_s
    status_code: int | None = None
    error: str | None = None
    try:
        target = resolve_webhook_target(
            pending.url,
            allow_private=settings.webhook_allow_private,
            resolve_timeout_s=min(settings.webhook_resolve_timeout_s, settings.webhook_timeout_s),
        )
        body, headers = _signed(pending)
        response = client.request("POST", target, content=body, headers=headers, deadline=deadline)
        status_code = response.status_code
    except UnresolvableHostError as failure:
        error = f"{type(failure).__name__}: {failure}"  # DNS may recover: retried
    except WebhookUrlError as refused:
        error = f"{REFUSED}webhook_url {refused}"
    except httpcore.TimeoutException as failure:
        error = (
            f"deadline of {settings.webhook_timeout_s:g} s exceeded ({str(failure) or 'timed out'})"
            if time.monotonic() >= deadline
            else f"{type(failure).__name__}: {failure}"
        )
    except Exception as failure:
        # anything else (a bug, a surprise from a library) is still an attempt that failed:
        # recorded, retried on the schedule, dead at its end; never an endless task loop
        log.exception("webhook_attempt_crashed", delivery_id=pending.delivery_id)
        error = f"{type(failure).__name__}: {failure}"
    duration_ms = (time.monotonic() - clock) * 1000
    if error is not None:
        error = error[:MAX_ERROR_LENGTH]
    return _Result(started, duration_ms, status_code, error)


def _signed(pending: _Pending) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(pending.payload, separators=(",", ":"), ensure_ascii=False)
    now = utcnow()
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": pending.delivery_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(pending.secret).sign(pending.delivery_id, now, body),
    }
    return body.encode(), headers


def _record(settings: Settings, pending: _Pending, result: _Result) -> AttemptOutcome:
    schedule = settings.webhook_retry_schedule_s
    status_code, error = result.status_code, result.error
    with session_scope(settings.database_url) as session:
        delivery = session.get(WebhookDelivery, pending.delivery_id, with_for_update=True)
        if delivery is None:
            return AttemptOutcome(None)
        session.add(
            WebhookAttempt(
                delivery_id=pending.delivery_id,
                attempt_number=pending.attempt_number,
                started_at=result.started,
                duration_ms=round(result.duration_ms, 3),
                status_code=status_code,
                error=error,
            )
        )
        delivery.attempt_count += 1  # attempts in this run of the schedule (a resend restarts it)
        delivery.last_status_code = status_code
        delivery.last_error = error
        now = utcnow()
        retry_in: float | None = None
        if error is None and status_code is not None and 200 <= status_code < 300:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
        elif status_code == 410 or (error or "").startswith(REFUSED):
            # the receiver asked us to stop, or may not be called
            delivery.status = DeliveryStatus.DEAD
            delivery.next_attempt_at = None
        elif delivery.attempt_count > len(schedule):
            delivery.status = DeliveryStatus.DEAD
            delivery.next_attempt_at = None
        else:
            retry_in = schedule[delivery.attempt_count - 1]
            delivery.next_attempt_at = now + timedelta(seconds=retry_in)
        log.info(
            "webhook_attempt",
            delivery_id=pending.delivery_id,
            attempt=pending.attempt_number,
            status_code=status_code,
            error=error,
            duration_ms=round(result.duration_ms, 1),
            delivery_status=delivery.status.value,
            retry_in_s=retry_in,
        )
        outcome = "retry" if retry_in is not None else delivery.status.value
    WEBHOOK_ATTEMPTS.labels(outcome).inc()  # once committed
    WEBHOOK_LATENCY.observe(result.duration_ms / 1000)
    return AttemptOutcome(retry_in)
