"""Webhook URL checks, at submission (API) and again before each delivery (post-processing).

A URL that resolves to a private, loopback, link-local or otherwise non-public address is
refused unless ``CHATQ_WEBHOOK_ALLOW_PRIVATE`` is set: otherwise any API key could make chatq
call services inside the network it runs in.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048


class WebhookUrlError(ValueError):
    pass


def check_webhook_url(url: str, *, allow_private: bool) -> None:
    """Raise WebhookUrlError (with a reason a caller can show) if ``url`` must not be called."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlError(f"longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise WebhookUrlError("must be an http or https URL")
    if not parts.hostname:
        raise WebhookUrlError("has no host")
    if parts.username or parts.password:
        raise WebhookUrlError("must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookUrlError("has an invalid port") from None
    if allow_private:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port)}
    except socket.gaierror:
        raise WebhookUrlError(f"host {parts.hostname!r} does not resolve") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global or ip.is_multicast:
            raise WebhookUrlError(
                f"resolves to a non-public address ({ip}); set CHATQ_WEBHOOK_ALLOW_PRIVATE=true "
                "to allow receivers inside your network"
            )
