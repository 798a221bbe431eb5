"""``chatq moderation``: a tenant's own lists, and precision/recall on a labelled set.

chatq moderation lists load --tenant T FILE...   .yaml/.json {name: {category, terms, allow}}
                                                  or .txt (one term a line, --category C)
chatq moderation lists list --tenant T
chatq moderation eval FILE [--tenant T] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shared.knowledge.schemas import MODERATION_CATEGORIES


class ModerationFileError(ValueError):
    pass


def read_list_file(path: Path, category: str | None) -> dict[str, Any]:
    """``{name: ModerationListIn}`` from one file; every entry validated before anything is
    stored."""
    from shared.moderation.tenant_lists import LIST_NAME_PATTERN, ModerationListIn

    if not path.is_file():
        raise ModerationFileError(f"{path}: no such file")
    if path.suffix == ".txt":
        if category is None:
            raise ModerationFileError(f"{path}: a .txt list needs --category")
        terms = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        raw: Any = {path.stem: {"category": category, "terms": [t for t in terms if t]}}
    elif path.suffix in {".yaml", ".yml", ".json"}:
        text = path.read_text(encoding="utf-8")
        try:
            raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as error:
            raise ModerationFileError(f"{path}: not valid {path.suffix[1:]}: {error}") from None
    else:
        raise ModerationFileError(f"{path}: use .txt, .yaml or .json")
    if not isinstance(raw, dict) or not raw:
        raise ModerationFileError(f"{path}: expected a mapping of list name to its terms")
    lists = {}
    for name, body in raw.items():
        if not LIST_NAME_PATTERN.fullmatch(str(name)):
            raise ModerationFileError(f"{path}: list name {name!r} must match [A-Za-z0-9._-]")
        try:
            lists[str(name)] = ModerationListIn.model_validate(body)
        except ValidationError as error:
            raise ModerationFileError(f"{path}: list {name!r}: {error}") from None
    return lists


def cmd_lists_load(args: argparse.Namespace) -> int:
    from shared.config import get_settings
    from shared.db.engine import session_scope
    from shared.db.migrate import upgrade_database
    from shared.knowledge import store
    from shared.moderation import tenant_lists

    lists: dict[str, Any] = {}
    for path in args.paths:
        lists.update(read_list_file(Path(path), args.category))
    database_url = get_settings().database_url
    upgrade_database(database_url)
    with session_scope(database_url) as session:
        tenant = store.tenant_by_name(session, args.tenant)
        for name, body in lists.items():
            tenant_lists.put_list(session, tenant.id, name, body)
    print(f"tenant {args.tenant!r}: {len(lists)} moderation list(s) stored")
    return 0


def cmd_lists_list(args: argparse.Namespace) -> int:
    from shared.config import get_settings
    from shared.db.engine import session_scope
    from shared.knowledge import store
    from shared.moderation import tenant_lists

    with session_scope(get_settings().database_url) as session:
        tenant = store.tenant_by_name(session, args.tenant)
        for row in tenant_lists.list_lists(session, tenant.id):
            print(f"  {row.name:<32} {row.category:<10} {len(row.terms):>5} terms")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from chatq.moderation_eval import evaluate, format_report

    moderator = None
    if args.tenant:
        from shared.config import get_settings
        from shared.db.engine import session_scope
        from shared.knowledge import store
        from shared.tenant_safety import load_tenant_safety

        with session_scope(get_settings().database_url) as session:
            moderator = load_tenant_safety(
                session, store.tenant_by_name(session, args.tenant)
            ).moderator
    report = evaluate(Path(args.file), moderator)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print(format_report(report))
    return 0


def add_moderation_parser(commands: Any) -> None:
    moderation = commands.add_parser(
        "moderation", help="a tenant's moderation lists; precision and recall on a labelled set"
    ).add_subparsers(dest="moderation_command", required=True, metavar="ACTION")

    lists = moderation.add_parser("lists", help="a tenant's own lists").add_subparsers(
        dest="lists_command", required=True, metavar="ACTION"
    )
    load = lists.add_parser("load", help="store lists from .yaml/.json/.txt files")
    load.add_argument("--tenant", required=True)
    load.add_argument("--category", choices=MODERATION_CATEGORIES, help="for .txt lists")
    load.add_argument("paths", nargs="+", metavar="FILE")
    load.set_defaults(handler=cmd_lists_load)
    listing = lists.add_parser("list", help="list a tenant's lists")
    listing.add_argument("--tenant", required=True)
    listing.set_defaults(handler=cmd_lists_list)

    evaluation = moderation.add_parser(
        "eval", help="precision and recall per language and category on a labelled YAML set"
    )
    evaluation.add_argument("file", help="e.g. examples/moderation/labelled.yaml")
    evaluation.add_argument("--tenant", help="moderate with this tenant's lists and actions")
    evaluation.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluation.set_defaults(handler=cmd_eval)
