"""The work behind the key endpoints: always within the caller's tenant, so another tenant's
key is as unknown (404) as a missing one."""

from __future__ import annotations

import uuid

from services.api.auth import Caller
from services.api.keys.protocol import IssuedKeyView, KeyCreate, KeyView
from services.api.problems import Problem, ProblemType
from shared import api_keys
from shared.api_keys import KeyInfo, KeyNotUsableError, Scope, UnknownKeyError, scopes_grant


def _not_found(key_id: str) -> Problem:
    return Problem(ProblemType.NOT_FOUND, f"No key {key_id!r}.")


def _parse_key_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise _not_found(raw) from None


def _info(database_url: str, caller: Caller, key_id: uuid.UUID) -> KeyInfo:
    for info in api_keys.list_api_keys(database_url, tenant_id=caller.tenant_id):
        if info.id == key_id:
            return info
    raise _not_found(str(key_id))


def list_keys(database_url: str, caller: Caller) -> list[KeyView]:
    return [
        KeyView.of(info)
        for info in api_keys.list_api_keys(database_url, tenant_id=caller.tenant_id)
    ]


def _refuse_operator_scope(caller: Caller, scopes: list[str] | None) -> None:
    """``operator`` reaches every tenant: only a key that holds it may hand it out (a tenant's
    admin may not make itself the deployment's operator)."""
    if scopes and Scope.OPERATOR in scopes and not scopes_grant(caller.scopes, Scope.OPERATOR):
        raise Problem(
            ProblemType.INSUFFICIENT_SCOPE,
            "Only a key with the `operator` scope may issue or rotate a key that has it "
            "(or use `chatq keys create --scopes operator`).",
            required_scope=Scope.OPERATOR.value,
        )


def create_key(database_url: str, caller: Caller, key_in: KeyCreate) -> IssuedKeyView:
    _refuse_operator_scope(caller, [str(scope) for scope in key_in.scopes or ()])
    try:
        issued = api_keys.create_api_key(
            database_url,
            key_in.name,
            key_in.allowed_cidrs,
            tenant_id=caller.tenant_id,
            scopes=key_in.scopes,
            rate_limit_per_s=key_in.rate_limit_per_s,
            rate_limit_burst=key_in.rate_limit_burst,
        )
    except ValueError as error:
        raise Problem(ProblemType.VALIDATION_ERROR, str(error)) from None
    return IssuedKeyView.issued(issued, _info(database_url, caller, issued.id))


def revoke_key(database_url: str, caller: Caller, raw_id: str) -> KeyView:
    key_id = _parse_key_id(raw_id)
    try:
        info = api_keys.revoke_api_key(database_url, str(key_id), tenant_id=caller.tenant_id)
    except UnknownKeyError:
        raise _not_found(raw_id) from None
    return KeyView.of(info)


def rotate_key(database_url: str, caller: Caller, raw_id: str, grace_s: float) -> IssuedKeyView:
    key_id = _parse_key_id(raw_id)
    _refuse_operator_scope(caller, _info(database_url, caller, key_id).scopes)
    try:
        rotation = api_keys.rotate_api_key(
            database_url, str(key_id), grace_s=grace_s, tenant_id=caller.tenant_id
        )
    except UnknownKeyError:
        raise _not_found(raw_id) from None
    except KeyNotUsableError as error:
        raise Problem(ProblemType.KEY_NOT_USABLE, str(error)) from None
    return IssuedKeyView.issued(rotation.new, _info(database_url, caller, rotation.new.id))
