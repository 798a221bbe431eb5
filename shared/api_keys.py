"""API keys: issued once, stored as a SHA-256 digest, each with its own webhook secret, scopes
and (optionally) its own rate limit. Listing, revoking and rotating live here too, so the CLI
and the admin API do exactly the same thing.

Keys are 256 random bits, so a plain digest is safe to store and lets a request's key be found
with one indexed lookup (no per-key salt to try).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.engine import session_scope
from shared.db.models import ApiKey, Tenant, utcnow
from shared.knowledge.store import ensure_tenant, tenant_by_name

KEY_PREFIX = "cq_"
PREFIX_LENGTH = 10  # "cq_" and 7 random characters: enough to tell keys apart, not to use one


class Scope(StrEnum):
    """What a key may do. ``admin`` may do everything within its tenant, managing the tenant's
    keys included. ``operator`` is the deployment's, not a tenant's: it acts on what every
    tenant shares (the model version the workers serve, the operator dashboard over all
    tenants), so no other scope grants it and a key holds it only when given it by name."""

    JOBS_WRITE = "jobs:write"  # submit jobs, chat, cancel, re-send webhooks, feedback
    JOBS_READ = "jobs:read"  # poll jobs, read sessions, webhook deliveries and feedback
    KNOWLEDGE_WRITE = "knowledge:write"  # knowledge, FAQ, intents, tenant settings, moderation
    ADMIN = "admin"
    OPERATOR = "operator"


ALL_SCOPES: tuple[Scope, ...] = tuple(Scope)
# What a tenant's ``admin`` holds: everything but the deployment's own scope.
TENANT_SCOPES: tuple[Scope, ...] = tuple(scope for scope in Scope if scope is not Scope.OPERATOR)
# A key created without --scopes can do what every key could do before scopes existed (and
# what keys issued then still can): everything a tenant may do.
DEFAULT_SCOPES: tuple[Scope, ...] = TENANT_SCOPES


class UnknownKeyError(LookupError):
    pass


class KeyNotUsableError(ValueError):
    """The key is revoked or past its grace period: it cannot be rotated."""


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_webhook_secret() -> str:
    # Standard Webhooks secrets: "whsec_" + base64 of 24 to 64 random bytes.
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def parse_cidrs(cidrs: Sequence[str]) -> list[str]:
    """Normalised networks; a bad one raises ValueError naming it."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(str(ipaddress.ip_network(cidr.strip(), strict=False)))
        except ValueError:
            raise ValueError(f"not an IP network: {cidr!r} (write e.g. 10.0.0.0/8)") from None
    return networks


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Scopes in their canonical order, without repeats; an unknown one raises ValueError."""
    wanted = set()
    for value in values:
        try:
            wanted.add(Scope(value.strip()))
        except ValueError:
            choices = ", ".join(ALL_SCOPES)
            raise ValueError(f"unknown scope {value.strip()!r} (choose from {choices})") from None
    if not wanted:
        raise ValueError("a key needs at least one scope")
    return [scope for scope in ALL_SCOPES if scope in wanted]


def scopes_grant(held: Collection[str], needed: Scope) -> bool:
    if needed is Scope.OPERATOR:
        return needed in held
    return needed in held or Scope.ADMIN in held


def _check_rate_limit(per_s: float | None, burst: int | None) -> None:
    if per_s is not None and per_s < 0:
        raise ValueError("a rate limit is a number of requests per second, 0 or more")
    if burst is not None and burst < 1:
        raise ValueError("a burst is at least 1 request")


@dataclass(frozen=True)
class IssuedKey:
    id: uuid.UUID
    name: str
    tenant: str
    key: str  # shown once, never stored
    webhook_secret: str
    allowed_cidrs: list[str]
    scopes: list[str] = field(default_factory=lambda: list(DEFAULT_SCOPES))


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: never the key, its digest or its webhook secret."""

    id: uuid.UUID
    name: str
    tenant_id: uuid.UUID
    tenant: str
    prefix: str
    scopes: list[str]
    allowed_cidrs: list[str]
    rate_limit_per_s: float | None
    rate_limit_burst: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def status(self, now: datetime | None = None) -> str:
        now = now or utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None:
            return "expired" if self.expires_at <= now else "expiring"
        return "active"

    @classmethod
    def of(cls, row: ApiKey, tenant_name: str) -> KeyInfo:
        return cls(
            id=row.id,
            name=row.name,
            tenant_id=row.tenant_id,
            tenant=tenant_name,
            prefix=row.key_prefix,
            scopes=list(row.scopes),
            allowed_cidrs=list(row.allowed_cidrs),
            rate_limit_per_s=row.rate_limit_per_s,
            rate_limit_burst=row.rate_limit_burst,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
        )


def create_api_key(
    database_url: str,
    name: str,
    allowed_cidrs: Sequence[str] = (),
    *,
    tenant: str | None = None,
    tenant_id: uuid.UUID | None = None,
    scopes: Iterable[str] | None = None,
    rate_limit_per_s: float | None = None,
    rate_limit_burst: int | None = None,
) -> IssuedKey:
    """Issue a key. Without ``tenant`` or ``tenant_id`` it belongs to the tenant called ``name``
    (created when it does not exist); with one of them it is added to that existing tenant."""
    if not name.strip():
        raise ValueError("an API key needs a name")
    networks = parse_cidrs(allowed_cidrs)
    granted = parse_scopes(scopes) if scopes is not None else list(DEFAULT_SCOPES)
    _check_rate_limit(rate_limit_per_s, rate_limit_burst)
    with session_scope(database_url) as session:
        if tenant_id is not None:
            owner = session.get(Tenant, tenant_id)
            if owner is None:
                raise LookupError(f"no tenant {tenant_id}")
        else:
            owner = tenant_by_name(session, tenant) if tenant else ensure_tenant(session, name)
        row, key = _new_key_row(
            owner.id,
            name.strip(),
            scopes=[str(scope) for scope in granted],
            allowed_cidrs=networks,
            webhook_secret=generate_webhook_secret(),
            rate_limit_per_s=rate_limit_per_s,
            rate_limit_burst=rate_limit_burst,
        )
        session.add(row)
        session.flush()
        return IssuedKey(
            row.id, row.name, owner.name, key, row.webhook_secret, networks, list(row.scopes)
        )


def _new_key_row(
    tenant_id: uuid.UUID,
    name: str,
    *,
    scopes: list[str],
    allowed_cidrs: list[str],
    webhook_secret: str,
    rate_limit_per_s: float | None,
    rate_limit_burst: int | None,
) -> tuple[ApiKey, str]:
    key = generate_api_key()
    row = ApiKey(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        name=name,
        key_prefix=key[:PREFIX_LENGTH],
        key_hash=hash_api_key(key),
        webhook_secret=webhook_secret,
        allowed_cidrs=allowed_cidrs,
        scopes=scopes,
        rate_limit_per_s=rate_limit_per_s,
        rate_limit_burst=rate_limit_burst,
        created_at=utcnow(),
    )
    return row, key


def list_api_keys(
    database_url: str, *, tenant: str | None = None, tenant_id: uuid.UUID | None = None
) -> list[KeyInfo]:
    """Every key (of one tenant, when given), oldest first."""
    with session_scope(database_url) as session:
        query = select(ApiKey, Tenant.name).join(Tenant, Tenant.id == ApiKey.tenant_id)
        if tenant is not None:
            query = query.where(Tenant.id == tenant_by_name(session, tenant).id)
        if tenant_id is not None:
            query = query.where(ApiKey.tenant_id == tenant_id)
        rows = session.execute(query.order_by(ApiKey.created_at, ApiKey.id)).all()
        return [KeyInfo.of(row, tenant_name) for row, tenant_name in rows]


def _find_key(session: Session, id_or_prefix: str, tenant_id: uuid.UUID | None) -> ApiKey:
    """The key with this id, or whose prefix (or whole key) this is; within one tenant if
    ``tenant_id`` is given, so that another tenant's key is as unknown as a missing one."""
    text = id_or_prefix.strip()
    try:
        condition = ApiKey.id == uuid.UUID(text)
    except ValueError:
        if len(text) < PREFIX_LENGTH:
            raise UnknownKeyError(
                f"no key {text!r}: give its id or its first {PREFIX_LENGTH} characters"
            ) from None
        condition = ApiKey.key_prefix == text[:PREFIX_LENGTH]
    query = select(ApiKey).where(condition).with_for_update()
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    found = session.scalars(query).all()
    if len(text) > PREFIX_LENGTH and not _looks_like_uuid(text):
        # the whole key was given: only the key it is counts
        found = [row for row in found if row.key_hash == hash_api_key(text)]
    if not found:
        raise UnknownKeyError(f"no key {text!r}")
    if len(found) > 1:
        ids = ", ".join(str(row.id) for row in found)
        raise UnknownKeyError(f"{text!r} names more than one key ({ids}): give the id")
    return found[0]


def _looks_like_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _tenant_name(session: Session, tenant_id: uuid.UUID) -> str:
    return session.scalars(select(Tenant.name).where(Tenant.id == tenant_id)).one()


def revoke_api_key(
    database_url: str, id_or_prefix: str, *, tenant_id: uuid.UUID | None = None
) -> KeyInfo:
    """Revoke a key now (revoking it again changes nothing). Every API process refuses it
    within ``CHATQ_KEY_CACHE_TTL_S``."""
    with session_scope(database_url) as session:
        row = _find_key(session, id_or_prefix, tenant_id)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        session.flush()
        return KeyInfo.of(row, _tenant_name(session, row.tenant_id))


@dataclass(frozen=True)
class Rotation:
    new: IssuedKey
    old: KeyInfo  # its ``expires_at`` is the end of the grace period


def rotate_api_key(
    database_url: str, id_or_prefix: str, *, grace_s: float, tenant_id: uuid.UUID | None = None
) -> Rotation:
    """Issue the key's successor, which works at once: same tenant, name, scopes, networks,
    rate limit and webhook secret (receivers go on verifying). The old key works for
    ``grace_s`` more seconds (0: it stops now)."""
    if grace_s < 0:
        raise ValueError("the grace period is 0 seconds or more")
    now = utcnow()
    with session_scope(database_url) as session:
        old = _find_key(session, id_or_prefix, tenant_id)
        if old.revoked_at is not None or (old.expires_at is not None and old.expires_at <= now):
            raise KeyNotUsableError(f"key {old.id} is revoked or expired: issue a new one")
        successor, key = _new_key_row(
            old.tenant_id,
            old.name,
            scopes=list(old.scopes),
            allowed_cidrs=list(old.allowed_cidrs),
            webhook_secret=old.webhook_secret,
            rate_limit_per_s=old.rate_limit_per_s,
            rate_limit_burst=old.rate_limit_burst,
        )
        session.add(successor)
        ends = now + timedelta(seconds=grace_s)
        old.expires_at = min(old.expires_at, ends) if old.expires_at else ends
        session.flush()
        tenant_name = _tenant_name(session, old.tenant_id)
        issued = IssuedKey(
            successor.id,
            successor.name,
            tenant_name,
            key,
            successor.webhook_secret,
            list(successor.allowed_cidrs),
            list(successor.scopes),
        )
        return Rotation(issued, KeyInfo.of(old, tenant_name))
