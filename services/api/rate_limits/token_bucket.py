"""Per-key token buckets, shared by every API process through the database.

One atomic ``UPDATE … RETURNING`` refills the bucket for the time since it was last touched and
takes the request's tokens, only if there are enough: no read-modify-write race between
processes, one round trip (≈0.5 ms on Postgres) on the common path. In-process buckets scaled by
the process count would cost nothing, but a client whose connections all land on one process
would get only 1/N of its rate, and the bound would move whenever the deployment scales.

Times are Unix seconds from the API hosts' clocks (NTP keeps them within milliseconds); a clock
that runs behind never takes tokens back.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db.engine import session_scope
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
        with session_scope(self.database_url) as session:
            left = self._take_if_enough(session, key_id, policy, cost, now)
            if left is not None:
                return Decision(True, left, policy, 0.0)
            current = self._level(session, key_id, policy, now)
            if current is None:
                try:
                    with session.begin_nested():
                        session.execute(
                            insert(RateLimitBucket).values(
                                api_key_id=key_id, tokens=policy.burst - cost, refilled_at=now
                            )
                        )
                    return Decision(True, policy.burst - cost, policy, 0.0)
                except IntegrityError:
                    # another process made the bucket just now: take from it like any other
                    left = self._take_if_enough(session, key_id, policy, cost, now)
                    if left is not None:
                        return Decision(True, left, policy, 0.0)
                    current = self._level(session, key_id, policy, now) or 0.0
            return Decision(False, current, policy, (cost - current) / policy.per_s)

    @staticmethod
    def _refilled(policy: BucketPolicy, now: float) -> ColumnElement[float]:
        bucket = RateLimitBucket
        elapsed = case((bucket.refilled_at < now, now - bucket.refilled_at), else_=0.0)
        level = bucket.tokens + elapsed * policy.per_s
        return case((level > policy.burst, float(policy.burst)), else_=level)

    def _take_if_enough(
        self, session: Session, key_id: uuid.UUID, policy: BucketPolicy, cost: float, now: float
    ) -> float | None:
        bucket = RateLimitBucket
        level = self._refilled(policy, now)
        statement = (
            update(bucket)
            .where(bucket.api_key_id == key_id, level >= cost)
            .values(
                tokens=level - cost,
                refilled_at=case((bucket.refilled_at < now, now), else_=bucket.refilled_at),
            )
            .returning(bucket.tokens)
            .execution_options(synchronize_session=False)
        )
        return session.execute(statement).scalar_one_or_none()

    def _level(
        self, session: Session, key_id: uuid.UUID, policy: BucketPolicy, now: float
    ) -> float | None:
        level = self._refilled(policy, now)
        return session.execute(
            select(level).where(RateLimitBucket.api_key_id == key_id)
        ).scalar_one_or_none()
