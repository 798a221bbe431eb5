"""``chatq feedback export --format dpo|sft --out FILE``: feedback as training data (TRL's
DPOTrainer and SFTTrainer read the files as they are; ``chatq train finetune`` reads SFT)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_feedback_export(args: argparse.Namespace) -> int:
    from chatq.feedback_export import ExportFormat, export_feedback
    from chatq.stats_command import parse_since
    from shared.config import get_settings
    from shared.db.migrate import upgrade_database
    from shared.db.models import utcnow
    from shared.pii.secret import pii_secret

    since = utcnow() - parse_since(args.since) if args.since else None
    settings = get_settings()
    upgrade_database(settings.database_url)
    report = export_feedback(
        settings,
        pii_secret(settings),
        Path(args.out),
        ExportFormat(args.format),
        tenants=args.tenant or (),
        since=since,
    )
    origins = ", ".join(f"{origin} {count}" for origin, count in sorted(report.by_origin.items()))
    print(
        f"{report.rows_written} {report.format.value} row(s) from {report.feedback_read} "
        f"feedback(s) → {args.out}" + (f" ({origins})" if origins else "")
    )
    return 0


def add_feedback_parser(commands: Any) -> None:
    feedback = commands.add_parser("feedback", help="feedback on answers").add_subparsers(
        dest="feedback_command", required=True, metavar="ACTION"
    )
    export = feedback.add_parser(
        "export", help="preference pairs (dpo) or chats (sft) for training, anonymised"
    )
    export.add_argument("--format", required=True, choices=["dpo", "sft"])
    export.add_argument("--out", required=True, metavar="FILE", help="JSON lines to write")
    export.add_argument(
        "--tenant", action="append", metavar="NAME", help="only these tenants (repeatable)"
    )
    export.add_argument("--since", metavar="WINDOW", help="only feedback of the last 7d, 24h, …")
    export.set_defaults(handler=cmd_feedback_export)
