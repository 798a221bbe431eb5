"""One webhook attempt at a time against a real local receiver: signed, recorded, scheduled;
cut off at its deadline, recorded whatever goes wrong, sent only to the address that was checked."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

import pytest
from sqlalchemy import select

from chatq.webhook_receiver import WebhookReceiver
from services.postprocess.results import record_outcome
from services.postprocess.webhooks import attempt_delivery
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from shared.webhook_client import WebhookClient, WebhookResponse
from shared.webhook_urls import WebhookTarget
from tests.integration.factories import completed_outcome, make_job
from tests.webhook_servers import FakeDns, SlowReceiver, Trickle


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture
def settings(backend_settings: Settings) -> Settings:
    return backend_settings.model_copy(
        update={"webhook_allow_private": True, "webhook_retry_schedule_s": [0.1, 0.2]}
    )


@pytest.fixture(scope="module")
def client() -> WebhookClient:
    return WebhookClient()


def pending_delivery(settings: Settings, receiver: WebhookReceiver, url: str | None = None) -> str:
    key = create_api_key(settings.database_url, "shop")
    receiver.secrets.append(key.webhook_secret)
    job = make_job(settings.database_url, key.id, webhook_url=url or receiver.url)
    (delivery_id,) = record_outcome(settings, completed_outcome(job.id))
    return delivery_id


def delivery_state(settings: Settings, delivery_id: str) -> tuple[WebhookDelivery, list[int]]:
    delivery, attempts = delivery_attempts(settings, delivery_id)
    return delivery, [attempt.status_code for attempt in attempts]


def delivery_attempts(
    settings: Settings, delivery_id: str
) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
    with session_scope(settings.database_url) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        attempts = session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.attempt_number)
        ).all()
        session.expunge_all()
    return delivery, list(attempts)


def test_a_signed_delivery_is_verified_by_the_receiver(
    settings: Settings, receiver: WebhookReceiver, client: WebhookClient
) -> None:
    delivery_id = pending_delivery(settings, receiver)
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
    settings: Settings, receiver: WebhookReceiver, client: WebhookClient
) -> None:
    delivery_id = pending_delivery(settings, receiver)
    receiver.respond_with = 500
    delays = [attempt_delivery(settings, delivery_id, client).retry_in_s for _ in range(3)]
    assert delays == [0.1, 0.2, None]
    delivery, codes = delivery_state(settings, delivery_id)
    assert delivery.status is DeliveryStatus.DEAD
    assert codes == [500, 500, 500]
    # every attempt carried the same webhook-id, so the receiver can deduplicate
    assert {r.headers["webhook-id"] for r in receiver.received} == {delivery_id}


def test_a_receiver_that_answers_410_is_not_called_again(
    settings: Settings, receiver: WebhookReceiver, client: WebhookClient
) -> None:
    delivery_id = pending_delivery(settings, receiver)
    receiver.respond_with = 410
    assert attempt_delivery(settings, delivery_id, client).retry_in_s is None
    assert attempt_delivery(settings, delivery_id, client).retry_in_s is None
    delivery, codes = delivery_state(settings, delivery_id)
    assert delivery.status is DeliveryStatus.DEAD
    assert codes == [410]


def test_a_receiver_that_is_down_is_retried(
    settings: Settings, receiver: WebhookReceiver, client: WebhookClient
) -> None:
    delivery_id = pending_delivery(settings, receiver, url="http://127.0.0.1:9/closed")
    assert attempt_delivery(settings, delivery_id, client).retry_in_s == 0.1
    delivery, codes = delivery_state(settings, delivery_id)
    assert delivery.status is DeliveryStatus.PENDING
    assert codes == [None]
    assert "ConnectError" in (delivery.last_error or "")


# --- hole 2: a receiver that answers slowly holds an attempt no longer than its deadline --------


@pytest.mark.parametrize("trickle", ["head", "body"])
def test_a_receiver_that_trickles_its_answer_fails_at_the_deadline(
    settings: Settings, receiver: WebhookReceiver, client: WebhookClient, trickle: Trickle
) -> None:
    settings = settings.model_copy(update={"webhook_timeout_s": 0.5})
    with SlowReceiver(trickle=trickle, interval_s=0.05) as slow:
        delivery_id = pending_delivery(settings, receiver, url=slow.url())
        started = time.monotonic()
        outcome = attempt_delivery(settings, delivery_id, client)
        took = time.monotonic() - started
        (exchange,) = slow.wait_until_closed(1, timeout_s=5)
    assert outcome.retry_in_s == 0.1  # a failed attempt, retried on the schedule
    delivery, (attempt,) = delivery_attempts(settings, delivery_id)
    assert delivery.status is DeliveryStatus.PENDING
    assert "deadline of 0.5 s exceeded" in (attempt.error or "")
    assert 500 <= attempt.duration_ms < 900
    assert took < 1.5  # recording included
    assert exchange.closed_at is not None and exchange.closed_at - started < 0.9


# --- hole 4: whatever goes wrong is a recorded attempt ----------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1:9/hook\r\nX-Injected: 1", id="crlf"),
        pytest.param("http://\u2460\u2461\u2466.0.0.1/hook", id="circled-digits"),
        pytest.param("http://127.0.0.1:\u2460/hook", id="circled-digit-port"),
    ],
)
def test_a_stored_url_the_client_cannot_fetch_is_recorded_and_dead_at_once(
    settings: Settings, receiver: WebhookReceiver, client: WebhookClient, url: str
) -> None:
    # rows stored before the check knew better: one recorded refusal, no traceback loop
    delivery_id = pending_delivery(settings, receiver, url=url)
    assert attempt_delivery(settings, delivery_id, client).retry_in_s is None
    delivery, (attempt,) = delivery_attempts(settings, delivery_id)
    assert delivery.status is DeliveryStatus.DEAD
    assert (attempt.error or "").startswith("refused: webhook_url")
    assert attempt.status_code is None


class ExplodingClient(WebhookClient):
    def request(
        self,
        method: str,
        target: WebhookTarget,
        *,
        content: bytes,
        headers: Mapping[str, str],
        deadline: float,
    ) -> WebhookResponse:
        raise RuntimeError("something no one expected")


def test_any_exception_in_an_attempt_is_a_failed_attempt_retried_then_dead(
    settings: Settings, receiver: WebhookReceiver
) -> None:
    delivery_id = pending_delivery(settings, receiver)
    client = ExplodingClient()
    delays = [attempt_delivery(settings, delivery_id, client).retry_in_s for _ in range(3)]
    assert delays == [0.1, 0.2, None]
    delivery, attempts = delivery_attempts(settings, delivery_id)
    assert delivery.status is DeliveryStatus.DEAD
    assert [a.error for a in attempts] == ["RuntimeError: something no one expected"] * 3


# --- hole 6: the name is resolved once; the connection goes where the check looked -----------


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    return FakeDns(monkeypatch)


def test_the_attempt_connects_to_the_address_that_was_checked(
    settings: Settings, receiver: WebhookReceiver, client: WebhookClient, dns: FakeDns
) -> None:
    port = int(receiver.url.split(":")[2].split("/")[0])
    answers = iter([["127.0.0.1"]])
    dns.answers["hooks.test"] = lambda: next(answers, ["127.0.0.2"])  # then it changes
    # another receiver at the address the name changes to: it must never hear from us
    with SlowReceiver(host="127.0.0.2", port=port, trickle="none") as impostor:
        delivery_id = pending_delivery(settings, receiver, url=f"http://hooks.test:{port}/hooks")
        assert attempt_delivery(settings, delivery_id, client).retry_in_s is None
    assert dns.asked == ["hooks.test"]  # once, to check; the connection used that answer
    assert impostor.exchanges == []
    (received,) = receiver.received
    assert received.verified
    assert received.headers["host"] == f"hooks.test:{port}"


def test_a_name_that_rebinds_to_a_private_address_after_the_check_reaches_nothing_private(
    settings: Settings, receiver: WebhookReceiver, client: WebhookClient, dns: FakeDns
) -> None:
    settings = settings.model_copy(
        update={"webhook_allow_private": False, "webhook_timeout_s": 1.0}
    )
    port = int(receiver.url.split(":")[2].split("/")[0])
    # a public address for the check, loopback for anyone who asks again
    answers = iter([["93.184.215.14"]])
    dns.answers["rebind.test"] = lambda: next(answers, ["127.0.0.1"])
    delivery_id = pending_delivery(settings, receiver, url=f"http://rebind.test:{port}/hooks")
    attempt_delivery(settings, delivery_id, client)
    delivery, (attempt,) = delivery_attempts(settings, delivery_id)
    assert receiver.received == []  # the loopback receiver was never called
    assert dns.asked == ["rebind.test"]
    assert attempt.status_code is None and attempt.error
    assert delivery.status is DeliveryStatus.PENDING
