"""``chatq purge``: apply the retention settings now (post-processors also run it on a schedule)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any


def cmd_purge(args: argparse.Namespace) -> int:
    from services.postprocess.purge import purge_once
    from shared.config import get_settings
    from shared.db.migrate import upgrade_database

    settings = get_settings()
    upgrade_database(settings.database_url)
    counts = purge_once(settings)
    if args.json:
        print(json.dumps(asdict(counts)))
    else:
        print(
            f"anonymised {counts.anonymised_jobs} job(s) past CHATQ_RESULT_RETENTION_S; "
            f"erased {counts.erased_jobs} job(s), deleted {counts.deleted_messages} message(s) "
            f"and {counts.deleted_sessions} session(s) past CHATQ_TRANSCRIPT_RETENTION_DAYS"
        )
    return 0


def add_purge_parser(commands: Any) -> None:
    purge = commands.add_parser(
        "purge", help="anonymise and delete what the retention settings no longer keep"
    )
    purge.add_argument("--json", action="store_true", help="print the counts as JSON")
    purge.set_defaults(handler=cmd_purge)
