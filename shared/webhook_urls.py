"""Webhook URL checks, at submission (API) and again before each delivery (post-processing).

The URL is parsed by the HTTP client's own parser (``httpx.URL``), so what is checked is exactly
what would be fetched: a URL the client would refuse (CR/LF, circled digits in the host, …) is
refused here, once, with a reason, instead of failing at every delivery.

A URL whose host resolves to a private, loopback, link-local or otherwise non-public address is
refused unless ``CHATQ_WEBHOOK_ALLOW_PRIVATE`` is set: otherwise any API key could make chatq call
services inside the network it runs in. IPv6 forms that carry an IPv4 address (IPv4-mapped and
-compatible, NAT64, 6to4, Teredo) are judged by the IPv4 address they lead to. The addresses that
were judged are returned, and the sender connects to those (never resolving the name again), so a
name that changes its answer between the check and the call (DNS rebinding) gains nothing.

Names are resolved in a small thread pool with a timeout: ``getaddrinfo`` cannot be interrupted,
and a slow DNS server must not hold an API request thread for its own timeout.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

MAX_URL_LENGTH = 2048
DEFAULT_RESOLVE_TIMEOUT_S = 3.0
RESOLVER_THREADS = 8

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 6052 well-known NAT64 prefix: the last 32 bits are the IPv4 address it translates to.
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
# RFC 8215 local-use NAT64 prefix: by definition it leads into a local network.
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
# RFC 4291 IPv4-compatible (deprecated) and RFC 2765 IPv4-translated: the last 32 bits.
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
# Not global, though the Python in use may not know it yet (fixed in later 3.11/3.12 releases).
ALSO_NOT_PUBLIC = (ipaddress.IPv4Network("192.0.0.0/24"), ipaddress.IPv6Network("2001::/23"))
PUBLIC_EXCEPTIONS = (ipaddress.IPv4Address("192.0.0.9"), ipaddress.IPv4Address("192.0.0.10"))


class WebhookUrlError(ValueError):
    """The URL must not be called; the message is a reason a caller can show."""


class UnresolvableHostError(WebhookUrlError):
    """The host did not resolve (in time): possibly transient, unlike the other refusals."""


@dataclass(frozen=True)
class WebhookTarget:
    url: httpx.URL  # exactly what is fetched
    port: int
    addresses: tuple[str, ...]  # the checked addresses to connect to, in resolver order


def parse_webhook_url(url: str) -> httpx.URL:
    """The URL as the HTTP client reads it, or WebhookUrlError saying why it cannot be used."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlError(f"longer than {MAX_URL_LENGTH} characters")
    if not url.isprintable() or any(char.isspace() for char in url):
        # the client would reject control characters, or quietly percent-encode spaces (a host
        # of "ex%20ample.com" resolves nowhere): neither is a URL the tenant meant
        raise WebhookUrlError("must not contain whitespace or control characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise WebhookUrlError(f"is not a valid URL ({error})") from None
    if parsed.scheme not in {"http", "https"}:
        raise WebhookUrlError("must be an http or https URL")
    if not parsed.raw_host:
        raise WebhookUrlError("has no host")
    if parsed.userinfo:
        raise WebhookUrlError("must not carry credentials")
    if b"%" in parsed.raw_host:
        raise WebhookUrlError("has an invalid host")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise WebhookUrlError("has an invalid port")
    return parsed


def default_port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def check_webhook_url(
    url: str, *, allow_private: bool, resolve_timeout_s: float = DEFAULT_RESOLVE_TIMEOUT_S
) -> None:
    """Raise WebhookUrlError (with a reason a caller can show) if ``url`` must not be called.

    With ``allow_private`` the host is not resolved: there is nothing to judge, and a receiver
    that is not up yet (a test, a demo) is not refused for it.
    """
    if allow_private:
        parse_webhook_url(url)
    else:
        resolve_webhook_target(url, allow_private=False, resolve_timeout_s=resolve_timeout_s)


def resolve_webhook_target(
    url: str, *, allow_private: bool, resolve_timeout_s: float = DEFAULT_RESOLVE_TIMEOUT_S
) -> WebhookTarget:
    """Parse, resolve and judge ``url``: what to fetch and the addresses it may connect to."""
    parsed = parse_webhook_url(url)
    port = default_port(parsed)
    host = parsed.raw_host.decode("ascii")
    addresses = resolve_host(host, port, timeout_s=resolve_timeout_s)
    if not allow_private:
        for address in addresses:
            reason = refusal_reason(ipaddress.ip_address(address.split("%", 1)[0]))
            if reason is not None:
                raise WebhookUrlError(
                    f"resolves to a non-public address ({address}: {reason}); set "
                    "CHATQ_WEBHOOK_ALLOW_PRIVATE=true to allow receivers inside your network"
                )
    return WebhookTarget(parsed, port, addresses)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address leads to (translation and tunnel forms), if any."""
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo  # (server, client): the packets go through both
    if ip in NAT64_WELL_KNOWN or ip in IPV4_TRANSLATED or ip in IPV4_COMPATIBLE:
        return (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    return ()


def refusal_reason(ip: IPAddress) -> str | None:
    """Why a webhook may not be sent to ``ip``; None if it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL_USE:
            return "local-use NAT64 prefix"
        for inner in embedded_ipv4(ip):
            reason = refusal_reason(inner)
            if reason is not None:
                return f"carries {inner}, {reason}"
    if ip.is_multicast:
        return "multicast"
    if ip in PUBLIC_EXCEPTIONS:
        return None
    if not ip.is_global or any(ip in network for network in ALSO_NOT_PUBLIC):
        return "not a public address"
    return None


def resolve_host(host: str, port: int, *, timeout_s: float) -> tuple[str, ...]:
    """The addresses ``host`` resolves to, without waiting more than ``timeout_s``."""
    try:
        return (str(ipaddress.ip_address(host)),)  # a literal: nothing to look up
    except ValueError:
        pass
    if timeout_s <= 0:
        raise UnresolvableHostError(f"host {host!r} was not resolved in time")
    future = _resolver_pool().submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=timeout_s)
    except TimeoutError:
        future.cancel()  # still queued: never runs; running: finishes in the pool, unread
        raise UnresolvableHostError(
            f"host {host!r} did not resolve within {timeout_s:g} s"
        ) from None
    except (OSError, UnicodeError):
        raise UnresolvableHostError(f"host {host!r} does not resolve") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnresolvableHostError(f"host {host!r} does not resolve")
    return addresses


_pool: ThreadPoolExecutor | None = None


def _resolver_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="webhook-resolver")
    return _pool


def _forget_pool_in_child() -> None:
    # a forked child (gunicorn, Celery) inherits the object but not its threads
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool_in_child)
