"""``chatq stats``: what the jobs of the last hours did, for operators at a terminal.

It only reads: no migration runs (an operator may point it at a read replica or use read-only
credentials), and on SQLite it takes no write lock, so the running services never wait for it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uuid

    from sqlalchemy import Connection, Engine

    from chatq.job_stats import JobStats, Percentiles, StatsWindow

EXIT_FAILURE = 1
EXIT_USAGE = 2
DEFAULT_SINCE = "24h"
SINCE_PATTERN = re.compile(r"([0-9]+)([smhdw])")
SINCE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class StatsInputError(ValueError):
    """The operator asked for something that cannot be answered (exit 2)."""


def parse_since(text: str) -> timedelta:
    """``30m``, ``24h``, ``7d`` (also ``s`` and ``w``) as a positive duration."""
    match = SINCE_PATTERN.fullmatch(text.strip().lower())
    if match is None:
        raise StatsInputError(
            f"bad --since {text!r}: give a number and a unit s, m, h, d or w (30m, 24h, 7d)"
        )
    amount, unit = int(match[1]), match[2]
    try:
        duration = timedelta(**{SINCE_UNITS[unit]: amount})
    except OverflowError:
        raise StatsInputError(f"bad --since {text!r}: longer than time itself") from None
    if duration <= timedelta(0):
        raise StatsInputError(f"bad --since {text!r}: the window must be longer than 0")
    return duration


def stats_window(since: str) -> StatsWindow:
    from chatq.job_stats import StatsWindow
    from shared.db.models import utcnow

    end = utcnow()
    duration = parse_since(since)
    try:
        start = end - duration
    except OverflowError:
        raise StatsInputError(f"bad --since {since!r}: reaches back before year 1") from None
    return StatsWindow(since.strip().lower(), start, end)


def read_only_engine(database_url: str) -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from shared.db.engine import SQLITE_BUSY_TIMEOUT_MS, create_db_engine

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_db_engine(database_url)
    path = url.database or ""
    on_disk = path and path != ":memory:" and not path.startswith("file:")
    # connecting would create a missing file: an empty database, and a confusing error
    if on_disk and not Path(path).is_file():
        raise FileNotFoundError(
            f"no database at {path} (`chatq db upgrade` or `chatq up` makes it)"
        )
    # Not create_db_engine: it begins every transaction IMMEDIATE (the write lock, which would
    # stall the services for the whole read), and it opens and closes the file to check its
    # mode, which drops the POSIX locks of every other connection this process has to it.
    # A plain connection reads in WAL mode (set in the file) beside the writers.
    return create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, hide_parameters=True
    )


@contextmanager
def read_only_connection(database_url: str) -> Iterator[Connection]:
    """A connection in a transaction that only reads."""
    engine = read_only_engine(database_url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                # one snapshot for every query, so deliveries are counted over the same jobs
                connection.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            with connection.begin():
                yield connection
    finally:
        engine.dispose()


def _tenant(connection: Connection, name: str) -> tuple[uuid.UUID, str]:
    from sqlalchemy import select

    from shared.db.models import Tenant

    tenant_id = connection.scalar(select(Tenant.id).where(Tenant.name == name.strip()))
    if tenant_id is None:
        raise StatsInputError(f"no tenant named {name.strip()!r}")
    return tenant_id, name.strip()


def read_stats(database_url: str, since: str, tenant: str | None) -> JobStats:
    """The figures for ``chatq stats`` (``StatsInputError`` for bad input, SQLAlchemy errors
    when the database cannot be read)."""
    from chatq.job_stats import collect_job_stats

    window = stats_window(since)
    with read_only_connection(database_url) as connection:
        scope = _tenant(connection, tenant) if tenant is not None else None
        return collect_job_stats(connection, window, scope)


def _database_problem(database_url: str, error: Exception) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, ProgrammingError

    try:
        shown = make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        shown = "the configured URL"
    cause = error.orig if isinstance(error, DBAPIError) and error.orig else error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    reason = lines[0] if lines else type(cause).__name__
    # a table missing (Postgres: UndefinedTable, a ProgrammingError) means an unmigrated database
    if isinstance(error, ProgrammingError) or "no such table" in reason:
        reason += " (`chatq db upgrade` migrates it)"
    return f"chatq stats: cannot read the database at {shown}: {reason}"


def cmd_stats(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from shared.config import get_settings

    database_url = get_settings().database_url
    try:
        stats = read_stats(database_url, args.since, args.tenant)
    except StatsInputError as error:
        print(f"chatq stats: {error}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as error:
        print(f"chatq stats: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except (SQLAlchemyError, OSError) as error:
        print(_database_problem(database_url, error), file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(stats.as_json(), ensure_ascii=False))
    else:
        print("\n".join(render_stats(stats)))
    return 0


# --- the text report ------------------------------------------------------------------------


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:6.1%}" if whole else "     -"


def _ms(value: float | None) -> str:
    return f"{value:10.1f}" if value is not None else f"{'-':>10}"


def _latency_line(label: str, figures: Percentiles) -> str:
    quantiles = _ms(figures.p50) + _ms(figures.p95) + _ms(figures.p99)
    return f"  {label:<26}{figures.count:>8}{quantiles}"


def _counted(title: str, counts: list[tuple[str, int]], whole: int) -> list[str]:
    lines = [f"  {title}"]
    lines += [f"    {name:<20}{count:>8}  {_percent(count, whole)}" for name, count in counts]
    return lines


def render_stats(stats: JobStats) -> list[str]:
    from chatq.job_stats import ranked

    window = stats.window
    scope = f"tenant {stats.tenant!r}" if stats.tenant else "all tenants"
    lines = [
        f"jobs created in the last {window.since} ({window.start:%Y-%m-%d %H:%M}Z to "
        f"{window.end:%Y-%m-%d %H:%M}Z), {scope}: {stats.jobs}",
        *_counted("by status", ranked(stats.by_status), stats.jobs),
        *_counted("by route", ranked(stats.by_route), stats.jobs),
        "",
        f"{'latency (ms)':<28}{'jobs':>8}{'p50':>10}{'p95':>10}{'p99':>10}",
        _latency_line("total, all routes", stats.total_ms),
        *(_latency_line(f"total, {r}", p) for r, p in stats.total_ms_by_route.items()),
        _latency_line("queue, model-answered", stats.queue_ms),
        _latency_line("inference, model-answered", stats.inference_ms),
        "",
        f"top intents ({sum(stats.intents.values())} jobs with an intent)",
        *(f"    {name:<20}{count:>8}" for name, count in stats.top_intents()),
        "",
        f"moderation: {stats.flagged} flagged job(s)  {_percent(stats.flagged, stats.jobs)}",
    ]
    if stats.flagged:
        lines += _counted("by stage", ranked(stats.flagged_by_stage), stats.flagged)
        lines += _counted("by action", ranked(stats.flagged_by_action), stats.flagged)
        lines += _counted("by category", ranked(stats.flagged_by_category), stats.flagged)
    deliveries = sum(stats.deliveries_by_status.values())
    failure_rate = stats.attempt_failure_rate
    lines += [
        "",
        f"handoffs: {stats.handoffs}  {_percent(stats.handoffs, stats.jobs)}",
        "",
        f"webhooks of these jobs: {deliveries} deliveries",
        *_counted("by status", ranked(stats.deliveries_by_status), deliveries),
        f"  attempts: {stats.attempts}, failed (non-2xx or error): {stats.failed_attempts}"
        + (f" ({failure_rate:.1%})" if failure_rate is not None else ""),
    ]
    return lines


def add_stats_parser(commands: Any) -> None:
    stats = commands.add_parser(
        "stats", help="jobs, latencies, intents, moderation and webhooks of a recent window"
    )
    stats.add_argument(
        "--since",
        default=DEFAULT_SINCE,
        metavar="DURATION",
        help="jobs created this long ago or later: 30m, 24h, 7d (default 24h)",
    )
    stats.add_argument("--tenant", metavar="NAME", help="only this tenant's jobs")
    stats.add_argument("--json", action="store_true", help="print one JSON object for scripts")
    stats.set_defaults(handler=cmd_stats)
