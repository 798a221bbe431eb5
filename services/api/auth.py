"""Bearer API keys with IP allowlists. A key sees only its own jobs and sessions."""

from __future__ import annotations

import ipaddress
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import g, request
from sqlalchemy import select

from services.api.context import api_context
from services.api.problems import Problem
from shared.api_keys import hash_api_key
from shared.db.engine import session_scope
from shared.db.models import ApiKey

F = TypeVar("F", bound=Callable[..., Any])

KEY_CACHE_S = 30.0
MAX_CACHED_KEYS = 10_000

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="chatq"'}


@dataclass(frozen=True)
class Caller:
    key_id: uuid.UUID
    name: str
    tenant_id: uuid.UUID


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", "Missing or invalid API key", detail, headers=_CHALLENGE)


@dataclass(frozen=True)
class _KnownKey:
    caller: Caller | None  # None: unknown or revoked
    allowed_cidrs: tuple[str, ...]
    expires: float


class KeyCache:
    """Recently seen keys, so that a request costs no extra database round trip.

    An entry lives ``KEY_CACHE_S``: revoking a key takes effect within that time.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _KnownKey] = {}
        self._lock = threading.Lock()

    def lookup(self, database_url: str, key_hash: str) -> _KnownKey:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get((database_url, key_hash))
        if entry is not None and entry.expires > now:
            return entry
        with session_scope(database_url) as session:
            key = session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
        usable = key is not None and key.revoked_at is None
        entry = _KnownKey(
            Caller(key.id, key.name, key.tenant_id) if usable and key else None,
            tuple(key.allowed_cidrs) if key else (),
            now + KEY_CACHE_S,
        )
        with self._lock:
            if len(self._entries) > MAX_CACHED_KEYS:
                self._entries.clear()
            self._entries[(database_url, key_hash)] = entry
        return entry


_keys = KeyCache()


def authenticate() -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Send the API key as `Authorization: Bearer <key>`.")
    known = _keys.lookup(api_context().settings.database_url, hash_api_key(token.strip()))
    if known.caller is None:
        raise _unauthorized("The API key is unknown or revoked.")
    if known.allowed_cidrs and not _address_allowed(request.remote_addr, known.allowed_cidrs):
        raise Problem(
            403, "ip-not-allowed", "Address not allowed",
            f"This API key may not be used from {request.remote_addr}.",
        )  # fmt: skip
    return known.caller


def _address_allowed(address: str | None, cidrs: tuple[str, ...]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(cidr) for cidr in cidrs)


def require_api_key(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.caller = authenticate()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def current_caller() -> Caller:
    return g.caller
