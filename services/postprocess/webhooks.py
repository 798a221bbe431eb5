"""Webhook delivery: one signed HTTP attempt, recorded, and what to do next.

Standard Webhooks: ``webhook-id`` (fixed for the event, so receivers can deduplicate),
``webhook-timestamp`` and ``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 of
``id.timestamp.body`` with the API key's ``whsec_`` secret), signed by the ``standardwebhooks``
package. A 2xx delivers; 410 Gone stops for good; anything else is retried on the configured
schedule, and after its last step the delivery is dead. The schedule lives in the database
(``next_attempt_at``): the delivery sweeper starts attempts when they are due, so a retry hours
away holds no broker message (RabbitMQ's consumer timeout) and survives any restart.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy import func, select
from standardwebhooks import Webhook

from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import ApiKey, DeliveryStatus, WebhookAttempt, WebhookDelivery, utcnow
from shared.logs import get_logger
from shared.webhook_urls import WebhookUrlError, check_webhook_url

log = get_logger(__name__)

USER_AGENT = "chatq-webhooks/1"


@dataclass(frozen=True)
class AttemptOutcome:
    # when the next attempt is due (the delivery sweeper starts it); None: nothing more to do
    retry_in_s: float | None


@dataclass(frozen=True)
class _Request:
    url: str
    body: str
    headers: dict[str, str]
    attempt_number: int


def attempt_delivery(settings: Settings, delivery_id: str, client: httpx.Client) -> AttemptOutcome:
    request = _prepare(settings, delivery_id)
    if request is None:
        return AttemptOutcome(None)
    started = utcnow()
    clock = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    try:
        check_webhook_url(request.url, allow_private=settings.webhook_allow_private)
        response = client.post(request.url, content=request.body, headers=request.headers)
        status_code = response.status_code
    except WebhookUrlError as refused:
        error = f"refused: {refused}"
    except httpx.HTTPError as failure:
        error = f"{type(failure).__name__}: {failure}"
    duration_ms = (time.perf_counter() - clock) * 1000
    return _record(settings, delivery_id, request, started, duration_ms, status_code, error)


def _prepare(settings: Settings, delivery_id: str) -> _Request | None:
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
        body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
        now = utcnow()
        signature = Webhook(secret).sign(delivery.id, now, body)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        return _Request(delivery.url, body, headers, (earlier_attempts or 0) + 1)


def _record(
    settings: Settings,
    delivery_id: str,
    request: _Request,
    started: object,
    duration_ms: float,
    status_code: int | None,
    error: str | None,
) -> AttemptOutcome:
    schedule = settings.webhook_retry_schedule_s
    with session_scope(settings.database_url) as session:
        delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None:
            return AttemptOutcome(None)
        session.add(
            WebhookAttempt(
                delivery_id=delivery_id,
                attempt_number=request.attempt_number,
                started_at=started,
                duration_ms=round(duration_ms, 3),
                status_code=status_code,
                error=error,
            )
        )
        delivery.attempt_count += 1  # attempts in this run of the schedule (a resend restarts it)
        delivery.last_status_code = status_code
        delivery.last_error = error
        now = utcnow()
        retry_in: float | None = None
        if status_code is not None and 200 <= status_code < 300:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
        elif status_code == 410 or (error or "").startswith("refused"):
            delivery.status = (
                DeliveryStatus.DEAD
            )  # the receiver asked us to stop, or may not be called
            delivery.next_attempt_at = None
        elif delivery.attempt_count > len(schedule):
            delivery.status = DeliveryStatus.DEAD
            delivery.next_attempt_at = None
        else:
            retry_in = schedule[delivery.attempt_count - 1]
            delivery.next_attempt_at = now + timedelta(seconds=retry_in)
        log.info(
            "webhook_attempt",
            delivery_id=delivery_id,
            attempt=request.attempt_number,
            status_code=status_code,
            error=error,
            delivery_status=delivery.status.value,
            retry_in_s=retry_in,
        )
        return AttemptOutcome(retry_in)
