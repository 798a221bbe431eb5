"""Which webhook URLs may be called: the client's own parser, every address form, DNS in time."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

import pytest

from shared.webhook_urls import (
    UnresolvableHostError,
    WebhookUrlError,
    check_webhook_url,
    embedded_ipv4,
    parse_webhook_url,
    refusal_reason,
    resolve_host,
    resolve_webhook_target,
)
from tests.webhook_servers import FakeDns

# --- the URL as the client reads it (hole 4) ------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_private_loopback_and_link_local_receivers_are_refused(url: str) -> None:
    with pytest.raises(WebhookUrlError, match="non-public address"):
        check_webhook_url(url, allow_private=False)


def test_private_receivers_are_allowed_when_configured() -> None:
    check_webhook_url("http://127.0.0.1:9000/hook", allow_private=True)


def test_public_addresses_pass() -> None:
    check_webhook_url("https://93.184.215.14/hook", allow_private=False)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "http or https"),
        ("http:///nohost", "no host"),
        ("https://user:pw@93.184.215.14/", "credentials"),
        ("https://93.184.215.14:99999/", "invalid port"),
        ("https://" + "a" * 2100 + ".com/", "longer than"),
    ],
)
def test_malformed_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(WebhookUrlError, match=reason):
        check_webhook_url(url, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://example.com/hook\r\nX-Injected: 1", id="crlf-in-path"),
        pytest.param("http://example.com\r\n.evil.test/hook", id="crlf-in-host"),
        pytest.param("http://example.com/hook\n", id="trailing-newline"),
        pytest.param("http://example.com/\x00", id="nul"),
        pytest.param("http://ex ample.com/hook", id="space-in-host"),
        pytest.param("http://\u2460\u2461\u2466.0.0.1/hook", id="circled-digits-host"),
        pytest.param("http://127.0.0.\u2460/hook", id="circled-digit-octet"),
        pytest.param("http://example.com:\u2460/hook", id="circled-digit-port"),
        pytest.param("http://exa\u200bmple.com/hook", id="zero-width-space"),
        pytest.param("http://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com/", id="full-width"),
    ],
)
def test_urls_the_http_client_would_refuse_are_refused_at_the_check(url: str) -> None:
    # the check says no with a reason, whatever allow_private says, before any DNS
    with pytest.raises(WebhookUrlError) as refused:
        check_webhook_url(url, allow_private=True)
    assert str(refused.value)


def test_the_checked_url_is_the_one_the_client_fetches() -> None:
    parsed = parse_webhook_url("https://B\u00fccher.example/h\u00fcks?q=\u00e4")
    assert parsed.raw_host == b"xn--bcher-kva.example"
    assert parsed.raw_path == b"/h%C3%BCks?q=%C3%A4"


# --- addresses (hole 6) ---------------------------------------------------------------------

NOT_PUBLIC = [
    pytest.param("::ffff:127.0.0.1", id="ipv4-mapped-loopback"),
    pytest.param("::ffff:10.0.0.1", id="ipv4-mapped-private"),
    pytest.param("::ffff:169.254.169.254", id="ipv4-mapped-metadata"),
    pytest.param("::127.0.0.1", id="ipv4-compatible-loopback"),
    pytest.param("::10.0.0.1", id="ipv4-compatible-private"),
    pytest.param("::169.254.169.254", id="ipv4-compatible-metadata"),
    pytest.param("::ffff:0:10.0.0.1", id="ipv4-translated-private"),
    pytest.param("64:ff9b::127.0.0.1", id="nat64-loopback"),
    pytest.param("64:ff9b::10.0.0.1", id="nat64-private"),
    pytest.param("64:ff9b::192.168.1.1", id="nat64-private-192"),
    pytest.param("64:ff9b::169.254.169.254", id="nat64-metadata"),
    pytest.param("64:ff9b:1::a00:1", id="nat64-local-use"),
    pytest.param("64:ff9b:1::5db8:d70e", id="nat64-local-use-public-v4"),
    pytest.param("2002:7f00:1::1", id="6to4-loopback"),
    pytest.param("2002:a00:1::1", id="6to4-private"),
    pytest.param("2002:a9fe:a9fe::1", id="6to4-metadata"),
    # Teredo: server 65.54.227.120, client 192.168.1.1 (stored inverted: 3f57:fefe)
    pytest.param("2001:0:4136:e378:8000:63bf:3f57:fefe", id="teredo-private-client"),
    pytest.param("2001:0:4136:e378:8000:63bf:3fff:fdd2", id="teredo"),
    pytest.param("::1", id="ipv6-loopback"),
    pytest.param("::", id="unspecified"),
    pytest.param("fe80::1", id="ipv6-link-local"),
    pytest.param("fc00::1", id="ipv6-unique-local"),
    pytest.param("ff02::1", id="ipv6-multicast"),
    pytest.param("224.0.0.1", id="ipv4-multicast"),
    pytest.param("100.64.0.1", id="carrier-grade-nat"),
    pytest.param("192.0.0.8", id="ietf-protocol-assignments"),
    pytest.param("198.18.0.1", id="benchmarking"),
]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_non_public_addresses_are_refused_in_every_form(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is not None
    with pytest.raises(WebhookUrlError, match="non-public address"):
        check_webhook_url(f"http://{_bracketed(address)}/hook", allow_private=False)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.215.14",
        "::ffff:93.184.215.14",
        "64:ff9b::93.184.215.14",  # NAT64 to a public IPv4 address is a public receiver
        "2002:5db8:d70e::1",  # 6to4 of 93.184.215.14
        "2606:4700::1111",
    ],
)
def test_public_addresses_in_every_form_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None
    target = resolve_webhook_target(f"https://{_bracketed(address)}/hook", allow_private=False)
    assert target.addresses == (str(ipaddress.ip_address(address)),)


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        ("::ffff:10.1.2.3", ["10.1.2.3"]),
        ("::10.1.2.3", ["10.1.2.3"]),
        ("::ffff:0:10.1.2.3", ["10.1.2.3"]),
        ("64:ff9b::10.1.2.3", ["10.1.2.3"]),
        ("2002:a01:203::1", ["10.1.2.3"]),
        ("2001:0:4136:e378:8000:63bf:3f57:fefe", ["65.54.227.120", "192.168.1.1"]),
        ("2606:4700::1111", []),
    ],
)
def test_the_ipv4_address_inside_an_ipv6_address_is_found(address: str, inner: list[str]) -> None:
    found = embedded_ipv4(ipaddress.IPv6Address(address))
    assert [str(ip) for ip in found] == inner


# --- names: judged by every answer, resolved in time, off the caller's thread ---------------


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    return FakeDns(monkeypatch)


@pytest.mark.parametrize(
    "addresses",
    [["93.184.215.14", "64:ff9b::a00:1"], ["2002:a00:1::1"], ["::ffff:127.0.0.1"]],
)
def test_a_name_is_refused_if_any_answer_is_not_public(dns: FakeDns, addresses: list[str]) -> None:
    dns.answers["hooks.test"] = addresses
    with pytest.raises(WebhookUrlError, match="non-public address"):
        check_webhook_url("https://hooks.test/hook", allow_private=False)


def test_a_public_name_yields_the_addresses_that_were_checked(dns: FakeDns) -> None:
    dns.answers["hooks.test"] = ["93.184.215.14", "2606:4700::1111", "93.184.215.14"]
    target = resolve_webhook_target("https://hooks.test:8443/hook", allow_private=False)
    assert target.addresses == ("93.184.215.14", "2606:4700::1111")
    assert target.port == 8443
    assert target.url.raw_host == b"hooks.test"


def test_a_slow_dns_answer_gives_up_in_time_and_off_the_callers_thread(
    dns: FakeDns,
) -> None:
    released = threading.Event()
    asked_on: list[threading.Thread] = []

    def slow() -> list[str]:
        asked_on.append(threading.current_thread())
        released.wait(10)  # a DNS server that does not answer
        return ["93.184.215.14"]

    dns.answers["slow.test"] = slow
    started = time.monotonic()
    try:
        with pytest.raises(UnresolvableHostError, match=r"did not resolve within 0\.3 s"):
            check_webhook_url("https://slow.test/hook", allow_private=False, resolve_timeout_s=0.3)
        waited = time.monotonic() - started
    finally:
        released.set()
    assert 0.3 <= waited < 1.0
    assert asked_on and asked_on[0] is not threading.current_thread()


def test_a_name_that_does_not_resolve_is_refused(dns: FakeDns) -> None:
    def fails() -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    dns.answers["nowhere.test"] = fails
    with pytest.raises(UnresolvableHostError, match="does not resolve"):
        resolve_host("nowhere.test", 443, timeout_s=1)


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address
