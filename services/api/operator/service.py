"""The figures of the operator dashboard, over every tenant, read from the database and the broker.

Every query is served by an index or bounded by a limit:

- The window's finished jobs: one query per status (completed, failed) on
  ``ix_jobs_status_created_at``, newest first and at most ``MAX_JOBS_PER_STATUS`` rows each. Jobs
  count by when they were created, so a job created before the window and finished inside it is
  left out; on the short windows of a dashboard that is the odd job at the left edge.
- The recent jobs: the newest ``RECENT_JOBS`` of each status, again on that index, merged here
  (an index on ``created_at`` alone, which this would need otherwise, does not exist).
- The dead webhooks: the newest ``DEAD_WEBHOOKS_SHOWN``, and their count (as ``/metrics`` reads
  it). Both scan ``webhook_deliveries`` until an index on ``(status, created_at)`` exists.

Percentiles come from the rows in Python: SQLite has no percentile function and the two
databases spell JSON access differently, so SQL percentiles would be two dialects of each query.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from services.api.operator.protocol import (
    BatchSizeCount,
    DashboardWindow,
    DeadWebhook,
    LatencyBucket,
    OperatorDashboard,
    QueueDepth,
    RecentJob,
    RouteCount,
    ThroughputBucket,
)
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import DeliveryStatus, Job, JobStatus, Tenant, WebhookDelivery, utcnow
from shared.logs import describe_database_error, get_logger
from shared.messaging.topology import ALL_QUEUES
from shared.system_state import SystemState, read_broker_state, read_database_state

log = get_logger(__name__)

# Every job of a 15-minute window on a CPU machine (about 3.5 jobs/s); past it the figures are
# the newest jobs' and the answer says so (``jobs_capped``). 10,000 rows took about 0.9 s to read
# and aggregate on SQLite here, inside the transaction that holds its write lock.
MAX_JOBS_PER_STATUS = 5_000
RECENT_JOBS = 20
DEAD_WEBHOOKS_SHOWN = 20
MAX_NOTE_CHARS = 300
NO_ROUTE = "none"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FINISHED_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED)


@dataclass(frozen=True)
class BucketGrid:
    """The window cut into equal buckets on whole multiples of their width since the epoch, so a
    refresh shifts the plot only when a new bucket begins; the last bucket is the current one."""

    start: datetime
    width: timedelta
    count: int

    @classmethod
    def ending_at(cls, now: datetime, window: DashboardWindow) -> BucketGrid:
        width = window.bucket
        end = EPOCH + ((now - EPOCH) // width + 1) * width
        count = window.duration // width
        return cls(end - count * width, width, count)

    def index(self, moment: datetime | None) -> int | None:
        if moment is None:
            return None
        position = (moment - self.start) // self.width
        return position if 0 <= position < self.count else None

    def starts(self) -> list[datetime]:
        return [self.start + position * self.width for position in range(self.count)]


class FinishedJob(NamedTuple):
    """The columns of a finished job the figures need (a tuple: thousands are made a request)."""

    status: JobStatus
    completed_at: datetime | None
    route: str | None
    timings: dict[str, Any] | None
    batch_size: int | None


def read_dashboard(
    settings: Settings, window: DashboardWindow, now: datetime | None = None
) -> OperatorDashboard:
    now = now or utcnow()
    grid = BucketGrid.ending_at(now, window)
    counts = SystemState()
    read_database_state(settings, counts)
    queues, broker_note = read_queues(settings)
    with session_scope(settings.database_url) as session:
        finished, capped = _finished_jobs(session, grid.start)
        recent = _recent_jobs(session)
        dead = _dead_webhooks(session)
    completed = [job for job in finished if job.status is JobStatus.COMPLETED]
    return OperatorDashboard(
        generated_at=now,
        window=window,
        window_start=grid.start,
        bucket_s=int(grid.width.total_seconds()),
        jobs_read=len(finished),
        jobs_capped=capped,
        queues=queues,
        broker_note=broker_note,
        outbox_backlog=counts.outbox_backlog,
        webhooks_dead=counts.webhooks_dead,
        throughput=throughput(grid, finished),
        latency=latency(grid, completed),
        batch_sizes=batch_sizes(completed),
        routes=route_mix(completed),
        recent_jobs=recent,
        dead_webhooks=dead,
    )


def read_queues(settings: Settings) -> tuple[list[QueueDepth], str | None]:
    """Each queue's depth and consumers; a broker that cannot be read leaves them unknown."""
    state = SystemState()
    note = None
    try:
        read_broker_state(settings, state)
    except Exception as error:
        # Whatever the broker raises (its client, its transport, the network), the rest of the
        # dashboard is still worth showing: the page says what is missing instead of failing.
        reason = describe_database_error(error) or _first_line(error)
        note = f"The broker could not be read ({type(error).__name__}: {reason})"[:MAX_NOTE_CHARS]
        log.warning("operator_dashboard_broker_unreadable", error=note)
    queues = []
    for queue in ALL_QUEUES:
        known = state.queues.get(queue.name)
        queues.append(
            QueueDepth(
                name=queue.name,
                ready=known.ready if known else None,
                consumers=known.consumers if known else None,
            )
        )
    return queues, note


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else "no message"


def _finished_jobs(session: Session, since: datetime) -> tuple[list[FinishedJob], bool]:
    jobs: list[FinishedJob] = []
    capped = False
    for status in FINISHED_STATUSES:
        rows = session.execute(
            select(Job.status, Job.completed_at, Job.route, Job.timings, Job.batch_size)
            .where(Job.status == status, Job.created_at >= since)
            .order_by(Job.created_at.desc())
            .limit(MAX_JOBS_PER_STATUS + 1)  # one more tells that the window held more
        ).all()
        capped = capped or len(rows) > MAX_JOBS_PER_STATUS
        jobs += [FinishedJob._make(row) for row in rows[:MAX_JOBS_PER_STATUS]]
    return jobs, capped


def _recent_jobs(session: Session) -> list[RecentJob]:
    rows: list[
        Row[
            uuid.UUID,
            uuid.UUID,
            JobStatus,
            str | None,
            dict[str, Any] | None,
            dict[str, Any] | None,
            datetime,
        ]
    ] = []
    for status in JobStatus:
        rows += session.execute(
            select(
                Job.id,
                Job.tenant_id,
                Job.status,
                Job.route,
                Job.moderation,
                Job.timings,
                Job.created_at,
            )
            .where(Job.status == status)
            # created_at alone: the index's own order (a second key would sort every row)
            .order_by(Job.created_at.desc())
            .limit(RECENT_JOBS)
        ).all()
    newest = sorted(rows, key=lambda row: (row.created_at, row.id), reverse=True)[:RECENT_JOBS]
    tenant_ids = {row.tenant_id for row in newest}
    names: dict[uuid.UUID, str] = {
        tenant_id: name
        for tenant_id, name in session.execute(
            select(Tenant.id, Tenant.name).where(Tenant.id.in_(tenant_ids))
        )
    }
    return [
        RecentJob(
            id=row.id,
            tenant=names.get(row.tenant_id, str(row.tenant_id)),
            status=JobStatus(row.status).value,
            route=row.route,
            moderation_flagged=_flagged(row.moderation),
            moderation_action=_action(row.moderation),
            total_ms=_number((row.timings or {}).get("total_ms")),
            created_at=row.created_at,
        )
        for row in newest
    ]


def _flagged(moderation: object) -> bool | None:
    return bool(moderation.get("flagged")) if isinstance(moderation, dict) else None


def _action(moderation: object) -> str | None:
    action = moderation.get("action") if isinstance(moderation, dict) else None
    return action if isinstance(action, str) else None


def _dead_webhooks(session: Session) -> list[DeadWebhook]:
    # the columns shown, not the row: a delivery's payload is the whole job
    rows = session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.job_id,
            WebhookDelivery.event_type,
            WebhookDelivery.url,
            WebhookDelivery.attempt_count,
            WebhookDelivery.last_status_code,
            WebhookDelivery.last_error,
            WebhookDelivery.created_at,
        )
        .where(WebhookDelivery.status == DeliveryStatus.DEAD)
        .order_by(WebhookDelivery.created_at.desc())
        .limit(DEAD_WEBHOOKS_SHOWN)
    ).all()
    return [
        DeadWebhook(
            id=row.id,
            job_id=row.job_id,
            event_type=row.event_type,
            url_host=urlsplit(row.url).hostname or "(no host)",
            attempts=row.attempt_count,
            last_status_code=row.last_status_code,
            last_error=_without_url(row.last_error, row.url),
            created_at=row.created_at,
        )
        for row in rows
    ]


def _without_url(error: str | None, url: str) -> str | None:
    # an HTTP client's message may quote the whole URL, whose path or query can hold a token
    if error is None:
        return None
    return error.replace(url, urlsplit(url).hostname or "(url)")[:MAX_NOTE_CHARS]


# --- the figures ------------------------------------------------------------------------------


def throughput(grid: BucketGrid, jobs: Iterable[FinishedJob]) -> list[ThroughputBucket]:
    """Finished jobs by the bucket they finished in."""
    completed = [0] * grid.count
    failed = [0] * grid.count
    for job in jobs:
        position = grid.index(job.completed_at)
        if position is None:
            continue
        if job.status is JobStatus.COMPLETED:
            completed[position] += 1
        else:
            failed[position] += 1
    return [
        ThroughputBucket(start=start, completed=completed[i], failed=failed[i])
        for i, start in enumerate(grid.starts())
    ]


def latency(grid: BucketGrid, completed: Iterable[FinishedJob]) -> list[LatencyBucket]:
    """p50 and p95 of the total and queue times of the jobs completed in each bucket."""
    total_ms: dict[int, list[float]] = defaultdict(list)
    queue_ms: dict[int, list[float]] = defaultdict(list)
    jobs: Counter[int] = Counter()
    for job in completed:
        position = grid.index(job.completed_at)
        if position is None:
            continue
        jobs[position] += 1
        timings = job.timings or {}
        if (total := _number(timings.get("total_ms"))) is not None:
            total_ms[position].append(total)
        if (queued := _number(timings.get("queue_ms"))) is not None:
            queue_ms[position].append(queued)
    buckets = []
    for position, start in enumerate(grid.starts()):
        totals = sorted(total_ms[position])
        queue_times = sorted(queue_ms[position])
        buckets.append(
            LatencyBucket(
                start=start,
                jobs=jobs[position],
                total_ms_p50=percentile(totals, 0.50),
                total_ms_p95=percentile(totals, 0.95),
                queue_ms_p50=percentile(queue_times, 0.50),
                queue_ms_p95=percentile(queue_times, 0.95),
            )
        )
    return buckets


def batch_sizes(completed: Iterable[FinishedJob]) -> list[BatchSizeCount]:
    """How many jobs the model answered in batches of each size (0 means it did not run)."""
    sizes = Counter(job.batch_size for job in completed if job.batch_size)
    return [BatchSizeCount(batch_size=size, jobs=sizes[size]) for size in sorted(sizes)]


def route_mix(completed: Iterable[FinishedJob]) -> list[RouteCount]:
    routes = Counter(job.route or NO_ROUTE for job in completed)
    ranked = sorted(routes.items(), key=lambda item: (-item[1], item[0]))
    return [RouteCount(route=route, jobs=count) for route, count in ranked]


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of sorted values, interpolated linearly between the closest ranks (as
    Postgres' ``percentile_cont`` and ``chatq stats`` compute it); None of no values."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    below, above = math.floor(position), math.ceil(position)
    value = ordered[below] + (ordered[above] - ordered[below]) * (position - below)
    return round(value, 3)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
