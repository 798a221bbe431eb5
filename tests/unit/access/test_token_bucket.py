"""The RateLimit headers follow draft-ietf-httpapi-ratelimit-headers."""

from __future__ import annotations

from services.api.rate_limits.token_bucket import BucketPolicy, Decision


def test_an_allowed_request_says_what_is_left_and_when_the_bucket_is_full() -> None:
    headers = Decision(True, 7.5, BucketPolicy(per_s=2.0, burst=10), 0.0).headers()
    assert headers == {
        "RateLimit-Policy": '"key";q=10;w=5',
        "RateLimit": '"key";r=7;t=2',
    }


def test_a_refused_request_says_when_to_retry() -> None:
    headers = Decision(False, 0.25, BucketPolicy(per_s=0.5, burst=3), 1.5).headers()
    assert headers["Retry-After"] == "2"
    assert headers["RateLimit"] == '"key";r=0;t=2'
    assert headers["RateLimit-Policy"] == '"key";q=3;w=6'
