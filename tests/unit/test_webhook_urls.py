import pytest

from shared.webhook_urls import WebhookUrlError, check_webhook_url


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
