"""``chatq status``: the queues (waiting messages and consumers: an inference queue without
consumers has no worker), the outbox backlog, dead webhooks and jobs by status, read from the
broker and the database the settings name. Either may be down: what can be read is printed,
and the exit status says whether both answered."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from chatq.unreachable import describe_unreachable
from shared.system_state import SystemState


def cmd_status(args: argparse.Namespace) -> int:
    from shared.config import get_settings
    from shared.system_state import read_broker_state, read_database_state

    settings = get_settings()
    state = SystemState()
    problems: dict[str, str] = {}
    for part, read in (
        ("database", lambda: read_database_state(settings, state, jobs=True)),
        ("broker", lambda: read_broker_state(settings, state)),
    ):
        try:
            read()
        except Exception as error:
            problems[part] = describe_unreachable(error, settings) or repr(error)
    if args.json:
        print(json.dumps({**asdict(state), "problems": problems}))
    else:
        print_state(state, problems)
    return 1 if problems else 0


def print_state(state: SystemState, problems: dict[str, str]) -> None:
    if state.queues:
        print(f"{'queue':<20} {'waiting':>8} {'consumers':>10}")
        for name, queue in state.queues.items():
            print(f"{name:<20} {queue.ready:>8} {queue.consumers:>10}")
    if "database" not in problems:
        counts = sorted(state.jobs_by_status.items())
        jobs = ", ".join(f"{status} {count}" for status, count in counts)
        print(f"jobs: {jobs or 'none'}")
        print(f"outbox backlog: {state.outbox_backlog}; dead webhooks: {state.webhooks_dead}")
    for part, problem in problems.items():
        print(f"{part}: {problem}")


def add_status_parser(commands: Any) -> None:
    status = commands.add_parser(
        "status", help="queues and their consumers, outbox backlog, dead webhooks, jobs"
    )
    status.add_argument("--json", action="store_true", help="print it as one JSON object")
    status.set_defaults(handler=cmd_status)
