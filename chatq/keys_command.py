"""``chatq keys``: issue, list, revoke and rotate API keys (the admin API does the same within
one tenant: ``/v1/keys``)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.api_keys import IssuedKey, KeyInfo


def _database_url() -> str:
    from shared.config import get_settings
    from shared.db.migrate import upgrade_database

    settings = get_settings()
    upgrade_database(settings.database_url)
    return settings.database_url


def _issued_json(issued: IssuedKey) -> dict[str, Any]:
    return {
        "id": str(issued.id),
        "name": issued.name,
        "tenant": issued.tenant,
        "key": issued.key,
        "webhook_secret": issued.webhook_secret,
        "allowed_cidrs": issued.allowed_cidrs,
        "scopes": issued.scopes,
    }


def _print_issued(issued: IssuedKey, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_issued_json(issued)))
        return
    print(f"API key for {issued.name!r} of tenant {issued.tenant!r} (shown once, store it now):")
    print(f"  id:             {issued.id}")
    print(f"  key:            {issued.key}")
    print(f"  webhook secret: {issued.webhook_secret}")
    print(f"  scopes:         {', '.join(issued.scopes)}")
    if issued.allowed_cidrs:
        print(f"  allowed from:   {', '.join(issued.allowed_cidrs)}")


def _info_json(info: KeyInfo) -> dict[str, Any]:
    return {
        "id": str(info.id),
        "name": info.name,
        "tenant": info.tenant,
        "prefix": info.prefix,
        "scopes": info.scopes,
        "allowed_cidrs": info.allowed_cidrs,
        "rate_limit_per_s": info.rate_limit_per_s,
        "rate_limit_burst": info.rate_limit_burst,
        "status": info.status(),
        "created_at": info.created_at.isoformat(),
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
    }


def _scopes(raw: str | None) -> list[str] | None:
    return None if raw is None else [part for part in raw.split(",") if part.strip()]


def cmd_keys_create(args: argparse.Namespace) -> int:
    from shared.api_keys import create_api_key

    issued = create_api_key(
        _database_url(),
        args.name,
        args.allow or (),
        tenant=args.tenant,
        scopes=_scopes(args.scopes),
        rate_limit_per_s=args.rate_limit,
        rate_limit_burst=args.burst,
    )
    _print_issued(issued, args.json)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from shared.api_keys import list_api_keys

    keys = list_api_keys(_database_url(), tenant=args.tenant)
    if args.json:
        print(json.dumps([_info_json(info) for info in keys]))
        return 0
    for info in keys:
        until = f" until {info.expires_at:%Y-%m-%d %H:%M:%S}Z" if info.expires_at else ""
        print(
            f"{info.id}  {info.prefix}…  {info.status()}{until}  tenant {info.tenant!r}  "
            f"{info.name!r}  {','.join(info.scopes)}"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from shared.api_keys import revoke_api_key

    info = revoke_api_key(_database_url(), args.key)
    print(f"key {info.id} ({info.prefix}…) of tenant {info.tenant!r} is revoked")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from shared.api_keys import rotate_api_key
    from shared.config import get_settings

    grace_s = get_settings().key_rotation_grace_s if args.grace_s is None else args.grace_s
    rotation = rotate_api_key(_database_url(), args.key, grace_s=grace_s)
    _print_issued(rotation.new, args.json)
    if not args.json:
        ends = rotation.old.expires_at
        print(f"the old key {rotation.old.id} works until {ends:%Y-%m-%d %H:%M:%S}Z")
    return 0


def add_keys_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    create = keys.add_parser("create", help="issue an API key and its webhook secret")
    create.add_argument("--name", required=True)
    create.add_argument("--allow", action="append", metavar="CIDR", help="allowed network")
    create.add_argument("--tenant", help="add the key to this existing tenant (default: --name)")
    create.add_argument(
        "--scopes",
        metavar="S,S",
        help="jobs:write, jobs:read, knowledge:write, admin (default: all of them)",
    )
    create.add_argument(
        "--rate-limit",
        type=float,
        metavar="PER_S",
        help="own rate (default CHATQ_RATE_LIMIT_PER_S)",
    )
    create.add_argument(
        "--burst", type=int, metavar="N", help="own burst (default CHATQ_RATE_LIMIT_BURST)"
    )
    create.add_argument("--json", action="store_true", help="print JSON for scripts")
    create.set_defaults(handler=cmd_keys_create)

    listing = keys.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--tenant", help="only this tenant's keys")
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    listing.set_defaults(handler=cmd_keys_list)

    revoke = keys.add_parser("revoke", help="stop a key at once (every API within 1 s)")
    revoke.add_argument("key", metavar="KEY_ID_OR_PREFIX")
    revoke.set_defaults(handler=cmd_keys_revoke)

    rotate = keys.add_parser("rotate", help="issue a key's successor; the old one expires")
    rotate.add_argument("key", metavar="KEY_ID")
    rotate.add_argument(
        "--grace-s",
        type=float,
        metavar="N",
        help="seconds the old key goes on working (default CHATQ_KEY_ROTATION_GRACE_S)",
    )
    rotate.add_argument("--json", action="store_true", help="print JSON for scripts")
    rotate.set_defaults(handler=cmd_keys_rotate)
