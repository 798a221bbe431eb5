"""``chatq models list|register|activate|deactivate``: the model versions workers serve.

Workers switch to a newly activated version within ``CHATQ_MODEL_REFRESH_INTERVAL_S``, between
batches, without losing a job (services/worker/model_switch.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _settings() -> Any:
    from shared.config import get_settings
    from shared.db.migrate import upgrade_database

    settings = get_settings()
    upgrade_database(settings.database_url)
    return settings


def cmd_models_list(args: argparse.Namespace) -> int:
    from shared.model_versions import list_model_versions

    settings = _settings()
    versions = list_model_versions(settings.database_url)
    if args.json:
        rows = [
            {
                "name": v.name,
                "path": str(v.path),
                "base": v.base,
                "active": v.active,
                "created_at": v.created_at.isoformat(),
                "activated_at": v.activated_at.isoformat() if v.activated_at else None,
            }
            for v in versions
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not any(v.active for v in versions):
        print(f"* (CHATQ_MODEL_DIR) {settings.model_dir}  ← served: no version is active")
    for version in versions:
        mark = "*" if version.active else " "
        print(f"{mark} {version.name}  {version.path}  created {version.created_at:%Y-%m-%d %H:%M}")
    return 0


def cmd_models_register(args: argparse.Namespace) -> int:
    from shared.model_versions import activate_model_version, register_model_version

    settings = _settings()
    version = register_model_version(settings.database_url, args.name, Path(args.path))
    print(f"registered {version.name} ({version.path})")
    if args.activate:
        activate_model_version(settings.database_url, version.name)
        print(f"activated {version.name}: workers switch to it between batches")
    return 0


def cmd_models_activate(args: argparse.Namespace) -> int:
    from shared.model_versions import activate_model_version

    settings = _settings()
    version = activate_model_version(settings.database_url, args.name)
    print(
        f"activated {version.name}: workers switch to it between batches, within "
        f"{settings.model_refresh_interval_s:g} s"
    )
    return 0


def cmd_models_deactivate(args: argparse.Namespace) -> int:
    from shared.model_versions import deactivate_model_versions

    settings = _settings()
    deactivate_model_versions(settings.database_url)
    print(f"no version active: workers go back to CHATQ_MODEL_DIR ({settings.model_dir})")
    return 0


def add_models_parser(commands: Any) -> None:
    models = commands.add_parser("models", help="model versions the workers serve").add_subparsers(
        dest="models_command", required=True, metavar="ACTION"
    )
    listing = models.add_parser("list", help="registered versions; * marks the one served")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_models_list)
    register = models.add_parser("register", help="register a folder built by chatq")
    register.add_argument("name")
    register.add_argument("path", help="a model folder (chatq model build / chatq train export)")
    register.add_argument("--activate", action="store_true", help="and serve it")
    register.set_defaults(handler=cmd_models_register)
    activate = models.add_parser("activate", help="serve this version (workers switch)")
    activate.add_argument("name")
    activate.set_defaults(handler=cmd_models_activate)
    models.add_parser("deactivate", help="serve CHATQ_MODEL_DIR again").set_defaults(
        handler=cmd_models_deactivate
    )
