"""Bearer API keys with IP allowlists. A key sees only its own jobs and sessions."""

from __future__ import annotations

import ipaddress
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

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="chatq"'}


@dataclass(frozen=True)
class Caller:
    key_id: uuid.UUID
    name: str


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", "Missing or invalid API key", detail, headers=_CHALLENGE)


def authenticate() -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Send the API key as `Authorization: Bearer <key>`.")
    with session_scope(api_context().settings.database_url) as session:
        key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(token.strip())))
    if key is None or key.revoked_at is not None:
        raise _unauthorized("The API key is unknown or revoked.")
    if key.allowed_cidrs and not _address_allowed(request.remote_addr, key.allowed_cidrs):
        raise Problem(
            403, "ip-not-allowed", "Address not allowed",
            f"This API key may not be used from {request.remote_addr}.",
        )  # fmt: skip
    return Caller(key.id, key.name)


def _address_allowed(address: str | None, cidrs: list[str]) -> bool:
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
