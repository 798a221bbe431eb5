"""One webhook attempt at a time against a real local receiver: signed, recorded, scheduled."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from chatq.webhook_receiver import WebhookReceiver
from services.postprocess.results import record_outcome
from services.postprocess.webhooks import attempt_delivery
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from tests.integration.factories import completed_outcome, make_job


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture
def settings(backend_settings: Settings) -> Settings:
    return backend_settings.model_copy(
        update={"webhook_allow_private": True, "webhook_retry_schedule_s": [0.1, 0.2]}
    )


def pending_delivery(settings: Settings, receiver: WebhookReceiver) -> str:
    key = create_api_key(settings.database_url, "shop")
    receiver.secrets.append(key.webhook_secret)
    job = make_job(settings.database_url, key.id, webhook_url=receiver.url)
    (delivery_id,) = record_outcome(settings.database_url, completed_outcome(job.id))
    return delivery_id


def delivery_state(settings: Settings, delivery_id: str) -> tuple[WebhookDelivery, list[int]]:
    with session_scope(settings.database_url) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        codes = session.scalars(
            select(WebhookAttempt.status_code)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.attempt_number)
        ).all()
    return delivery, list(codes)


def test_a_signed_delivery_is_verified_by_the_receiver(
    settings: Settings, receiver: WebhookReceiver
) -> None:
    delivery_id = pending_delivery(settings, receiver)
    with httpx.Client(timeout=5) as client:
        outcome = attempt_delivery(settings, delivery_id, client)
    assert outcome.retry_in_s is None
    (received,) = receiver.received
    assert received.verified
    assert received.headers["webhook-id"] == delivery_id
    assert received.payload["type"] == "job.completed"
    assert received.payload["data"]["response"] == "It ships tomorrow."
    delivery, codes = delivery_state(settings, delivery_id)
    assert delivery.status is DeliveryStatus.DELIVERED
    assert codes == [204]


def test_failures_are_retried_on_the_schedule_then_dead(
    settings: Settings, receiver: WebhookReceiver
) -> None:
    delivery_id = pending_delivery(settings, receiver)
    receiver.respond_with = 500
    delays = []
    with httpx.Client(timeout=5) as client:
        for _ in range(3):
            delays.append(attempt_delivery(settings, delivery_id, client).retry_in_s)
    assert delays == [0.1, 0.2, None]
    delivery, codes = delivery_state(settings, delivery_id)
    assert delivery.status is DeliveryStatus.DEAD
    assert codes == [500, 500, 500]
    # every attempt carried the same webhook-id, so the receiver can deduplicate
    assert {r.headers["webhook-id"] for r in receiver.received} == {delivery_id}


def test_a_receiver_that_answers_410_is_not_called_again(
    settings: Settings, receiver: WebhookReceiver
) -> None:
    delivery_id = pending_delivery(settings, receiver)
    receiver.respond_with = 410
    with httpx.Client(timeout=5) as client:
        assert attempt_delivery(settings, delivery_id, client).retry_in_s is None
        assert attempt_delivery(settings, delivery_id, client).retry_in_s is None
    delivery, codes = delivery_state(settings, delivery_id)
    assert delivery.status is DeliveryStatus.DEAD
    assert codes == [410]


def test_a_receiver_that_is_down_is_retried(settings: Settings, receiver: WebhookReceiver) -> None:
    delivery_id = pending_delivery(settings, receiver)
    with session_scope(settings.database_url) as session:
        session.get(WebhookDelivery, delivery_id).url = "http://127.0.0.1:9/closed"
    with httpx.Client(timeout=2) as client:
        assert attempt_delivery(settings, delivery_id, client).retry_in_s == 0.1
    delivery, codes = delivery_state(settings, delivery_id)
    assert delivery.status is DeliveryStatus.PENDING
    assert codes == [None]
    assert "ConnectError" in (delivery.last_error or "")
