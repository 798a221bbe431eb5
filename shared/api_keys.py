"""API keys: issued once, stored as a SHA-256 digest, each with its own webhook secret.

Keys are 256 random bits, so a plain digest is safe to store and lets a request's key be found
with one indexed lookup (no per-key salt to try).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from shared.db.engine import session_scope
from shared.db.models import ApiKey
from shared.knowledge.store import ensure_tenant, tenant_by_name

KEY_PREFIX = "cq_"


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


@dataclass(frozen=True)
class IssuedKey:
    id: uuid.UUID
    name: str
    tenant: str
    key: str  # shown once, never stored
    webhook_secret: str
    allowed_cidrs: list[str]


def create_api_key(
    database_url: str,
    name: str,
    allowed_cidrs: Sequence[str] = (),
    *,
    tenant: str | None = None,
) -> IssuedKey:
    """Issue a key. Without ``tenant`` it belongs to the tenant called ``name`` (created when
    it does not exist); with ``tenant`` it is added to that existing tenant (key rotation)."""
    if not name.strip():
        raise ValueError("an API key needs a name")
    networks = parse_cidrs(allowed_cidrs)
    key = generate_api_key()
    secret = generate_webhook_secret()
    with session_scope(database_url) as session:
        owner = tenant_by_name(session, tenant) if tenant else ensure_tenant(session, name)
        row = ApiKey(
            tenant_id=owner.id,
            name=name.strip(),
            key_prefix=key[:10],
            key_hash=hash_api_key(key),
            webhook_secret=secret,
            allowed_cidrs=networks,
        )
        session.add(row)
        session.flush()
        key_id, tenant_name = row.id, owner.name
    return IssuedKey(key_id, row.name, tenant_name, key, secret, networks)
