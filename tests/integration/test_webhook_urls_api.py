"""``POST /v1/jobs`` refuses webhook URLs that could never be delivered or must not be called
(issue 8, holes 4 and 6): a 422 problem, nothing stored, and never a long wait on DNS."""

from __future__ import annotations

import threading
import time

import pytest
from flask.testing import FlaskClient

from services.api.app import create_app
from shared.api_keys import create_api_key
from shared.config import Settings
from tests.integration.test_api_contract import assert_problem
from tests.webhook_servers import FakeDns

pytestmark = pytest.mark.integration


def submitter(settings: Settings) -> tuple[FlaskClient, dict[str, str]]:
    key = create_api_key(settings.database_url, "shop")
    return create_app(settings).test_client(), {"Authorization": f"Bearer {key.key}"}


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://hooks.example.com/hook\r\nX-Injected: 1", id="crlf"),
        pytest.param("https://hooks.example.com/hook\n", id="trailing-newline"),
        pytest.param("https://\u2460\u2461\u2466.0.0.1/hook", id="circled-digits"),
        pytest.param("https://hooks.example.com:\u2460/hook", id="circled-digit-port"),
        pytest.param("https://ex ample.com/hook", id="space-in-host"),
        pytest.param("https://exa\u200bmple.com/hook", id="zero-width-space"),
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_a_url_the_http_client_would_refuse_is_a_422(
    backend_settings: Settings, url: str, allow_private: bool
) -> None:
    settings = backend_settings.model_copy(update={"webhook_allow_private": allow_private})
    client, auth = submitter(settings)
    response = client.post("/v1/jobs", json={"query": "hi", "webhook_url": url}, headers=auth)
    assert_problem(response, 422, "invalid-webhook-url")


@pytest.mark.parametrize(
    "host",
    [
        "[::ffff:10.0.0.1]",
        "[::10.0.0.1]",
        "[64:ff9b::a9fe:a9fe]",
        "[64:ff9b:1::a00:1]",
        "[2002:a9fe:a9fe::1]",
        "[2001:0:4136:e378:8000:63bf:3f57:fefe]",
    ],
)
def test_private_addresses_in_ipv6_clothing_are_a_422(
    backend_settings: Settings, host: str
) -> None:
    client, auth = submitter(backend_settings)
    response = client.post(
        "/v1/jobs", json={"query": "hi", "webhook_url": f"http://{host}/hook"}, headers=auth
    )
    body = assert_problem(response, 422, "invalid-webhook-url")
    assert "non-public address" in body["detail"]


def test_a_slow_dns_server_costs_a_submit_the_resolve_timeout_and_no_more(
    backend_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = backend_settings.model_copy(update={"webhook_resolve_timeout_s": 0.5})
    client, auth = submitter(settings)
    dns = FakeDns(monkeypatch)
    released = threading.Event()

    def no_answer() -> list[str]:
        released.wait(20)  # a DNS server that does not answer (until the test ends)
        return ["93.184.215.14"]

    dns.answers["slow.test"] = no_answer
    started = time.monotonic()
    try:
        response = client.post(
            "/v1/jobs",
            json={"query": "hi", "webhook_url": "https://slow.test/hook"},
            headers=auth,
        )
        waited = time.monotonic() - started
    finally:
        released.set()
    body = assert_problem(response, 422, "invalid-webhook-url")
    assert "did not resolve within 0.5 s" in body["detail"]
    assert waited < 2.0
