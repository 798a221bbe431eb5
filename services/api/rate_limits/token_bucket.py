"""Per-key token buckets, shared by every API process through the database.

One atomic ``UPDATE … RETURNING`` refills the bucket for the time since it was last touched and
takes the request's tokens, only if there are enough: no read-modify-write race between
processes, one round trip on the common path (a statement of its own, whose commit does not
wait for the disk). In-process buckets scaled by the process count would cost nothing, but a
client whose connections all land on one process would get only 1/N of its rate, and the bound
would move whenever the deployment scales.

Times are Unix seconds from the API hosts' clocks (NTP keeps them within milliseconds); a clock
that runs behind never takes tokens back.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Float, bindparam, case, insert, select, update
from sqlalchemy.exc import IntegrityError

from shared.db.engine import autocommit, transaction
from shared.db.models import RateLimitBucket

POLICY_NAME = "key"


@dataclass(frozen=True)
class BucketPolicy:
    per_s: float  # tokens regained per second; 0: no limit
    burst: int  # bucket size

    @property
    def limited(self) -> bool:
        return self.per_s > 0

    @property
    def window_s(self) -> int:
        """The time an empty bucket takes to fill: the policy's window for clients."""
        return max(1, math.ceil(self.burst / self.per_s))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: float  # tokens left after this request
    policy: BucketPolicy
    retry_after_s: float  # when refused: until the bucket holds enough for this request

    def headers(self) -> dict[str, str]:
        """``RateLimit-Policy`` and ``RateLimit`` as in draft-ietf-httpapi-ratelimit-headers
        (structured-field lists: quota ``q`` per window ``w``; remaining ``r``, reset ``t``)."""
        policy = self.policy
        if self.allowed:
            reset = math.ceil(max(0.0, policy.burst - self.remaining) / policy.per_s)
        else:
            reset = self.retry_after_seconds
        headers = {
            "RateLimit-Policy": f'"{POLICY_NAME}";q={policy.burst};w={policy.window_s}',
            "RateLimit": f'"{POLICY_NAME}";r={math.floor(self.remaining)};t={reset}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers

    @property
    def retry_after_seconds(self) -> int:
        return max(1, math.ceil(self.retry_after_s))


class TokenBuckets:
    def __init__(self, database_url: str, clock: Callable[[], float] = time.time) -> None:
        self.database_url = database_url
        self.clock = clock

    def take(self, key_id: uuid.UUID, policy: BucketPolicy, cost: float) -> Decision:
        """Take ``cost`` tokens from the key's bucket if it holds them."""
        now = self.clock()
        parameters = {
            "key": key_id,
            "now": now,
            "per_s": policy.per_s,
            "burst": float(policy.burst),
            "cost": cost,
        }
        # The common path, a bucket with the tokens: its one statement on its own, not waiting
        # for the disk (a bucket a database crash takes back has only refilled a little).
        with autocommit(self.database_url, durable=False) as connection:
            left = connection.execute(_TAKE, parameters).scalar_one_or_none()
        if left is not None:
            return Decision(True, left, policy, 0.0)
        with transaction(self.database_url) as connection:
            left = connection.execute(_TAKE, parameters).scalar_one_or_none()
            if left is not None:  # refilled meanwhile
                return Decision(True, left, policy, 0.0)
            current = connection.execute(_LEVEL, parameters).scalar_one_or_none()
            if current is None:
                try:
                    with connection.begin_nested():
                        connection.execute(
                            insert(RateLimitBucket).values(
                                api_key_id=key_id, tokens=policy.burst - cost, refilled_at=now
                            )
                        )
                    return Decision(True, policy.burst - cost, policy, 0.0)
                except IntegrityError:
                    # another process made the bucket just now: take from it like any other
                    left = connection.execute(_TAKE, parameters).scalar_one_or_none()
                    if left is not None:
                        return Decision(True, left, policy, 0.0)
                    current = connection.execute(_LEVEL, parameters).scalar_one_or_none() or 0.0
            return Decision(False, current, policy, (cost - current) / policy.per_s)


# The statements are built once with parameters (``key``, ``now``, ``per_s``, ``burst``,
# ``cost``): every authenticated request runs one, and building it per request cost more than
# running it.
_BUCKET = RateLimitBucket
_NOW = bindparam("now", type_=Float)
_ELAPSED = case((_BUCKET.refilled_at < _NOW, _NOW - _BUCKET.refilled_at), else_=0.0)
_FILLED = _BUCKET.tokens + _ELAPSED * bindparam("per_s", type_=Float)
_BURST = bindparam("burst", type_=Float)
# the bucket's level once refilled for the time since it was last touched, at most its size
_REFILLED = case((_FILLED > _BURST, _BURST), else_=_FILLED)
_OF_KEY = _BUCKET.api_key_id == bindparam("key", type_=RateLimitBucket.__table__.c.api_key_id.type)
_COST = bindparam("cost", type_=Float)
# refill and take the cost if the bucket then holds it; returns the tokens left (no row: no
# bucket, or not enough)
_TAKE = (
    update(_BUCKET)
    .where(_OF_KEY, _REFILLED >= _COST)
    .values(
        tokens=_REFILLED - _COST,
        refilled_at=case((_BUCKET.refilled_at < _NOW, _NOW), else_=_BUCKET.refilled_at),
    )
    .returning(_BUCKET.tokens)
)
_LEVEL = select(_REFILLED).where(_OF_KEY)
