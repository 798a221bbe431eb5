"""The webhook client against real sockets: one deadline per call, capped reads, pinned addresses
with the name kept for Host, SNI and certificate checks."""

from __future__ import annotations

import ssl
import time

import httpcore
import httpx
import pytest
import trustme

from shared.webhook_client import MAX_RESPONSE_BYTES, WebhookClient, WebhookResponse
from shared.webhook_urls import WebhookTarget
from tests.webhook_servers import SlowReceiver

DEADLINE_S = 0.6
SLACK_S = 0.4  # scheduling on a busy 2-core machine


def target(url: str, *addresses: str) -> WebhookTarget:
    parsed = httpx.URL(url)
    return WebhookTarget(parsed, parsed.port or 80, addresses)


def send(
    client: WebhookClient, to: WebhookTarget, deadline_s: float = DEADLINE_S
) -> WebhookResponse:
    return client.request(
        "POST",
        to,
        content=b'{"type":"job.completed"}',
        headers={"content-type": "application/json"},
        deadline=time.monotonic() + deadline_s,
    )


@pytest.fixture(scope="module")
def client() -> WebhookClient:
    return WebhookClient()


@pytest.mark.parametrize("trickle", ["head", "body"])
def test_a_trickling_answer_is_cut_off_at_the_deadline(client: WebhookClient, trickle: str) -> None:
    # one byte every 50 ms: far inside any per-read timeout, so only a deadline stops it
    with SlowReceiver(trickle=trickle, interval_s=0.05) as receiver:
        started = time.monotonic()
        with pytest.raises(httpcore.TimeoutException):
            send(client, target(receiver.url(), "127.0.0.1"))
        took = time.monotonic() - started
        (exchange,) = receiver.wait_until_closed(1, timeout_s=5)
    assert DEADLINE_S <= took < DEADLINE_S + SLACK_S
    assert exchange.closed_at is not None
    assert exchange.closed_at - started < DEADLINE_S + SLACK_S


def test_only_the_first_64_kib_of_an_answer_are_read(client: WebhookClient) -> None:
    with SlowReceiver(trickle="none", body_length=50 * MAX_RESPONSE_BYTES) as receiver:
        response = send(client, target(receiver.url(), "127.0.0.1"), deadline_s=5)
    assert response.status_code == 200
    assert len(response.body) == MAX_RESPONSE_BYTES
    assert response.complete is False


def test_the_connection_goes_to_the_checked_address_and_the_request_names_the_host(
    client: WebhookClient,
) -> None:
    # hooks.test resolves nowhere (RFC 2606): the call succeeds only if it never asks DNS
    with SlowReceiver(trickle="none", body_length=2) as receiver:
        to = target(f"http://hooks.test:{receiver.port}/hooks", "127.0.0.1")
        response = send(client, to, deadline_s=5)
        (exchange,) = receiver.wait_for_requests(1, timeout_s=5)
    assert response.status_code == 200
    assert exchange.host_header == f"hooks.test:{receiver.port}"
    assert exchange.body == b'{"type":"job.completed"}'


def test_the_next_checked_address_is_tried_when_one_refuses(client: WebhookClient) -> None:
    with SlowReceiver(trickle="none", body_length=2) as receiver:
        # nothing listens on 127.0.0.2 at that port: refused at once, then 127.0.0.1 answers
        to = target(f"http://hooks.test:{receiver.port}/hooks", "127.0.0.2", "127.0.0.1")
        assert send(client, to, deadline_s=5).status_code == 200


def test_a_target_without_checked_addresses_is_never_connected(client: WebhookClient) -> None:
    with pytest.raises(httpcore.ConnectError, match="no checked address"):
        send(client, target("http://hooks.test:9/hooks"))


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


def tls_receiver(ca: trustme.CA, name: str) -> SlowReceiver:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return SlowReceiver(trickle="none", body_length=2, tls=context)


def trusting(ca: trustme.CA) -> WebhookClient:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return WebhookClient(context)


def test_tls_to_a_pinned_address_sends_and_verifies_the_name(
    certificate_authority: trustme.CA,
) -> None:
    with tls_receiver(certificate_authority, "hooks.test") as receiver:
        to = target(f"https://hooks.test:{receiver.port}/hooks", "127.0.0.1")
        response = send(trusting(certificate_authority), to, deadline_s=5)
        (exchange,) = receiver.wait_for_requests(1, timeout_s=5)
    assert response.status_code == 200
    assert exchange.server_name == "hooks.test"
    assert exchange.host_header == f"hooks.test:{receiver.port}"


def test_tls_to_a_pinned_address_refuses_a_certificate_for_another_name(
    certificate_authority: trustme.CA,
) -> None:
    with tls_receiver(certificate_authority, "elsewhere.test") as receiver:
        to = target(f"https://hooks.test:{receiver.port}/hooks", "127.0.0.1")
        with pytest.raises(httpcore.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            send(trusting(certificate_authority), to, deadline_s=5)
