"""Bearer API keys: IP allowlists, scopes, per-key rate limits. A key sees only its tenant's jobs
and sessions.

Every view says the scope it needs: ``@require_api_key(Scope.JOBS_WRITE)``. The wrapper checks,
in order: the key (401), its networks (403), its scopes (403 naming the missing one) and its
token bucket (429); then the view runs with ``current_caller()``.
"""

from __future__ import annotations

import ipaddress
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Any, Generic, TypeVar, cast

from flask import Flask, Response, after_this_request, current_app, g, request
from sqlalchemy import select

from services.api.problems import Problem, ProblemType
from services.api.rate_limits.open_waits import WaitSlots
from services.api.rate_limits.token_bucket import BucketPolicy, Decision, TokenBuckets
from shared.api_keys import DEFAULT_SCOPES, Scope, hash_api_key, scopes_grant
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import ApiKey, utcnow

F = TypeVar("F", bound=Callable[..., Any])

EXTENSION_KEY = "chatq.access"
MAX_KNOWN_KEYS = 10_000
MAX_UNKNOWN_KEYS = 10_000

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="chatq"'}


@dataclass(frozen=True)
class Caller:
    key_id: uuid.UUID
    name: str
    tenant_id: uuid.UUID
    scopes: frozenset[str] = frozenset(DEFAULT_SCOPES)


@dataclass(frozen=True)
class KeyRecord:
    """What a request needs to know about a usable (not revoked) key."""

    caller: Caller
    allowed_cidrs: tuple[str, ...]
    expires_at: datetime | None  # the end of a rotated key's grace period
    # the key's own rate limit; None takes the settings'
    rate_limit_per_s: float | None = None
    rate_limit_burst: int | None = None


def _unauthorized(detail: str) -> Problem:
    return Problem(ProblemType.UNAUTHORIZED, detail, headers=_CHALLENGE)


def load_key(database_url: str, key_hash: str) -> KeyRecord | None:
    """The usable key with this digest, or None (unknown or revoked)."""
    with session_scope(database_url) as session:
        key = session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
    if key is None or key.revoked_at is not None:
        return None
    return KeyRecord(
        Caller(key.id, key.name, key.tenant_id, frozenset(key.scopes)),
        tuple(key.allowed_cidrs),
        key.expires_at,
        key.rate_limit_per_s,
        key.rate_limit_burst,
    )


class KeyCache:
    """What this process read about keys in the last ``ttl_s`` seconds, so a busy key costs one
    database read per ``ttl_s`` instead of one per request; a revocation is seen within ``ttl_s``.

    Known and unknown keys live in two separate LRU maps, each bounded: a flood of random keys
    evicts only other unknown keys, never a key that works.
    """

    def __init__(
        self,
        load: Callable[[str], KeyRecord | None],
        ttl_s: float,
        *,
        max_known: int = MAX_KNOWN_KEYS,
        max_unknown: int = MAX_UNKNOWN_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self.ttl_s = ttl_s
        self._clock = clock
        self._known: LruTtlMap[KeyRecord] = LruTtlMap(max_known)
        self._unknown: LruTtlMap[None] = LruTtlMap(max_unknown)
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}  # key hash → its read under way

    def lookup(self, key_hash: str) -> KeyRecord | None:
        with self._lock:
            cached = self._cached(key_hash, self._clock())
            if cached is not None:
                return cached[0]
            loading = self._loading.setdefault(key_hash, threading.Lock())
        # One read per key at a time: when a busy key's entry expires, every request that
        # misses would read it at once (4 % of the API's CPU under a submit load); the others
        # wait for that one read and take its result.
        with loading:
            try:
                # the time of the read is taken before it: an entry never outlives ttl_s
                # after the state it holds was current
                now = self._clock()
                with self._lock:
                    cached = self._cached(key_hash, now)
                if cached is not None:
                    return cached[0]
                record = self._load(key_hash)
                with self._lock:
                    if record is None:
                        self._known.pop(key_hash)
                        self._unknown.put(key_hash, None, now + self.ttl_s)
                    else:
                        self._unknown.pop(key_hash)
                        self._known.put(key_hash, record, now + self.ttl_s)
                return record
            finally:
                with self._lock:
                    if self._loading.get(key_hash) is loading:
                        del self._loading[key_hash]

    def _cached(self, key_hash: str, now: float) -> tuple[KeyRecord | None] | None:
        """``(record,)`` or ``(None,)`` (known unknown) while fresh; None when not cached."""
        known = self._known.get(key_hash, now)
        if known is not None:
            return known
        if self._unknown.get(key_hash, now) is not None:
            return (None,)
        return None


V = TypeVar("V")


class LruTtlMap(Generic[V]):
    """A bounded map whose entries expire; the least recently used goes first when full."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[V, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, now: float) -> tuple[V] | None:
        entry = self._entries.get(name)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[name]
            return None
        self._entries.move_to_end(name)
        return (entry[0],)

    def put(self, name: str, value: V, expires: float) -> None:
        if self.capacity <= 0:
            return
        self._entries[name] = (value, expires)
        self._entries.move_to_end(name)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def pop(self, name: str) -> None:
        self._entries.pop(name, None)


@dataclass
class AccessControl:
    """The API process's key cache and limits (one per app)."""

    settings: Settings
    keys: KeyCache
    buckets: TokenBuckets
    waits: WaitSlots

    @classmethod
    def for_settings(cls, settings: Settings) -> AccessControl:
        url = settings.database_url
        return cls(
            settings=settings,
            keys=KeyCache(lambda key_hash: load_key(url, key_hash), settings.key_cache_ttl_s),
            buckets=TokenBuckets(url),
            waits=WaitSlots(url, settings.max_open_waits_per_key),
        )

    def bucket_policy(self, record: KeyRecord) -> BucketPolicy:
        per_s, burst = record.rate_limit_per_s, record.rate_limit_burst
        return BucketPolicy(
            self.settings.rate_limit_per_s if per_s is None else per_s,
            self.settings.rate_limit_burst if burst is None else burst,
        )


def access_control() -> AccessControl:
    return current_app.extensions[EXTENSION_KEY]


def install_access_control(app: Flask, settings: Settings) -> None:
    """Keys, scopes and limits for ``app``; every answer to a rate-limited key carries its
    ``RateLimit`` headers."""
    app.extensions[EXTENSION_KEY] = AccessControl.for_settings(settings)

    @app.after_request
    def _rate_limit_headers(response: Response) -> Response:
        decision: Decision | None = g.get("rate_limit")
        if decision is not None:
            for name, value in decision.headers().items():
                response.headers.setdefault(name, value)
        return response


def authenticate() -> KeyRecord:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Send the API key as `Authorization: Bearer <key>`.")
    record = access_control().keys.lookup(hash_api_key(token.strip()))
    if record is None:
        raise _unauthorized("The API key is unknown or revoked.")
    if record.expires_at is not None and record.expires_at <= utcnow():
        raise _unauthorized("The API key was rotated and its grace period is over.")
    if record.allowed_cidrs and not _address_allowed(request.remote_addr, record.allowed_cidrs):
        raise Problem(
            ProblemType.IP_NOT_ALLOWED,
            f"This API key may not be used from {request.remote_addr}.",
        )
    return record


def _address_allowed(address: str | None, cidrs: tuple[str, ...]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(cidr) for cidr in cidrs)


def _check_scope(caller: Caller, needed: Scope) -> None:
    if not scopes_grant(caller.scopes, needed):
        raise Problem(
            ProblemType.INSUFFICIENT_SCOPE,
            f"This API key lacks the scope {needed.value!r} this request needs.",
            required_scope=needed.value,
            key_scopes=sorted(caller.scopes),
        )


def _take_tokens(record: KeyRecord) -> None:
    control = access_control()
    policy = control.bucket_policy(record)
    if not policy.limited:
        return
    settings = control.settings
    cost = settings.rate_limit_read_cost if request.method in ("GET", "HEAD") else 1.0
    if cost <= 0:
        return
    decision = control.buckets.take(record.caller.key_id, policy, cost)
    g.rate_limit = decision
    if not decision.allowed:
        raise Problem(
            ProblemType.RATE_LIMITED,
            f"This API key may make {policy.per_s:g} requests per second with bursts of "
            f"{policy.burst}; retry in {decision.retry_after_seconds} s.",
            headers=decision.headers(),
        )


def require_api_key(scope: Scope | str | Callable[..., Any]) -> Any:
    """``@require_api_key(Scope.JOBS_READ)``: the view needs a key holding that scope.

    Used bare (``@require_api_key``) the view needs ``admin``: a view that does not say what
    it needs is open only to keys that may do everything.
    """
    if callable(scope):
        return _guard(scope, Scope.ADMIN, declared=False)
    needed = Scope(scope)

    def decorate(view: F) -> F:
        return _guard(view, needed, declared=True)

    return decorate


def _guard(view: F, needed: Scope, *, declared: bool) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        record = authenticate()
        g.caller = record.caller
        _check_scope(record.caller, needed)
        _take_tokens(record)
        return view(*args, **kwargs)

    # read by the OpenAPI document and by the test that every view declares its scope
    wrapper.__dict__.update(required_scope=needed, scope_declared=declared)
    return cast(F, wrapper)  # wraps() keeps the view's signature, which typeshed cannot say


def current_caller() -> Caller:
    return g.caller


def hold_wait_slot(wait_s: float) -> AbstractContextManager[None]:
    """A context that holds one of the caller's open-wait slots (429 when none is free)."""
    return access_control().waits.hold(current_caller().key_id, wait_s)


@contextmanager
def hold_wait_slot_until_answered(wait_s: float) -> Iterator[None]:
    """As ``hold_wait_slot``, but a wait that ends gives its slot back once the answer is
    written, not before: the slot's DELETE (a commit) is then not between a finished job and
    the client that waits for it. A wait that fails gives it back at once. The slot counts a
    moment longer against the key's cap, until the answer is out."""
    slot = ExitStack()
    slot.enter_context(hold_wait_slot(wait_s))
    try:
        yield
    except BaseException:
        slot.close()
        raise

    def give_back_once_answered(response: Response) -> Response:
        # the server closes every response once written (PEP 3333), and on a disconnect
        response.call_on_close(slot.close)
        return response

    after_this_request(give_back_once_answered)
