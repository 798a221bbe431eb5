"""What the jobs of a time window add up to: counts by status and route, latency percentiles,
intents, moderation hits, handoffs and webhook deliveries (``chatq stats`` prints it).

Counts that need no JSON (deliveries, attempts) are grouped in SQL. Everything read from the JSON
columns (timings, intent, moderation) is aggregated in Python over one streamed pass of the jobs:
SQLite has no percentile function and the two databases spell JSON access differently, so SQL
percentiles would mean two dialects of every query. The pass keeps only numbers and counters,
which stays small up to a few hundred thousand jobs.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, func, or_, select

from shared.db.models import (
    DeliveryStatus,
    Job,
    JobStatus,
    WebhookAttempt,
    WebhookDelivery,
)

NO_ROUTE = "none"  # failed, expired and unfinished jobs have no route (as in the metrics)
TOP_INTENTS = 10
STREAM_BATCH_ROWS = 2_000
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolated linearly between the closest ranks:
    the same definition as Postgres' ``percentile_cont`` and numpy's default, so a figure can
    be checked against either."""
    position = (len(ordered) - 1) * q
    below = math.floor(position)
    above = math.ceil(position)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50: float | None
    p95: float | None
    p99: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> Percentiles:
        ordered = sorted(values)
        if not ordered:
            return NO_VALUES
        p50, p95, p99 = (round(percentile(ordered, q), 3) for q in QUANTILES.values())
        return cls(len(ordered), p50, p95, p99)

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "p50": self.p50, "p95": self.p95, "p99": self.p99}


NO_VALUES = Percentiles(0, None, None, None)


@dataclass(frozen=True)
class StatsWindow:
    since: str  # as the operator wrote it (24h)
    start: datetime
    end: datetime


@dataclass
class JobStats:
    window: StatsWindow
    tenant: str | None
    jobs: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    total_ms: Percentiles = NO_VALUES
    total_ms_by_route: dict[str, Percentiles] = field(default_factory=dict)
    model_answered: int = 0
    queue_ms: Percentiles = NO_VALUES  # of model-answered jobs
    inference_ms: Percentiles = NO_VALUES  # of model-answered jobs
    intents: Counter[str] = field(default_factory=Counter)
    flagged: int = 0
    flagged_by_stage: Counter[str] = field(default_factory=Counter)
    flagged_by_action: Counter[str] = field(default_factory=Counter)
    flagged_by_category: Counter[str] = field(default_factory=Counter)
    handoffs: int = 0
    deliveries_by_status: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    failed_attempts: int = 0

    def share(self, count: int) -> float:
        return count / self.jobs if self.jobs else 0.0

    @property
    def attempt_failure_rate(self) -> float | None:
        return self.failed_attempts / self.attempts if self.attempts else None

    def top_intents(self) -> list[tuple[str, int]]:
        return ranked(self.intents)[:TOP_INTENTS]

    def as_json(self) -> dict[str, Any]:
        return {
            "window": {
                "since": self.window.since,
                "from": self.window.start.isoformat(),
                "to": self.window.end.isoformat(),
            },
            "tenant": self.tenant,
            "jobs": {
                "total": self.jobs,
                "by_status": self._counts_and_shares(self.by_status),
                "by_route": self._counts_and_shares(self.by_route),
            },
            "latency_ms": {
                "total_ms": {
                    "all": self.total_ms.as_json(),
                    "by_route": {r: p.as_json() for r, p in self.total_ms_by_route.items()},
                },
                "model_answered": self.model_answered,
                "queue_ms": self.queue_ms.as_json(),
                "inference_ms": self.inference_ms.as_json(),
            },
            "intents": [{"name": name, "count": count} for name, count in self.top_intents()],
            "moderation": {
                "flagged": self.flagged,
                "by_stage": dict(ranked(self.flagged_by_stage)),
                "by_action": dict(ranked(self.flagged_by_action)),
                "by_category": dict(ranked(self.flagged_by_category)),
            },
            "handoffs": {"count": self.handoffs, "share": round(self.share(self.handoffs), 4)},
            "webhooks": {
                "deliveries": {
                    "total": sum(self.deliveries_by_status.values()),
                    "by_status": dict(self.deliveries_by_status),
                },
                "attempts": {
                    "total": self.attempts,
                    "failed": self.failed_attempts,
                    "failure_rate": (
                        None
                        if self.attempt_failure_rate is None
                        else round(self.attempt_failure_rate, 4)
                    ),
                },
            },
        }

    def _counts_and_shares(self, counts: Counter[str]) -> dict[str, dict[str, int | float]]:
        return {
            name: {"count": count, "share": round(self.share(count), 4)}
            for name, count in ranked(counts)
        }


def ranked(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """Largest first, ties by name (so a listing does not change between runs)."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def collect_job_stats(
    connection: Connection, window: StatsWindow, tenant: tuple[uuid.UUID, str] | None
) -> JobStats:
    """The figures of the jobs created in ``window`` (of one tenant, given its id and name)."""
    in_window: list[ColumnElement[bool]] = [
        Job.created_at >= window.start,
        Job.created_at < window.end,
    ]
    if tenant is not None:
        in_window.append(Job.tenant_id == tenant[0])
    stats = JobStats(window, tenant[1] if tenant else None)
    stats.by_status.update({status.value: 0 for status in JobStatus})
    _add_jobs(connection, in_window, stats)
    _add_webhooks(connection, in_window, stats)
    return stats


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _add_jobs(
    connection: Connection, in_window: Sequence[ColumnElement[bool]], stats: JobStats
) -> None:
    rows = connection.execution_options(yield_per=STREAM_BATCH_ROWS).execute(
        select(Job.status, Job.route, Job.timings, Job.intent, Job.moderation, Job.handoff).where(
            *in_window
        )
    )
    total_ms: dict[str, list[float]] = defaultdict(list)
    queue_ms: list[float] = []
    inference_ms: list[float] = []
    for status, route, timings, intent, moderation, handoff in rows:
        route_name = route or NO_ROUTE
        stats.jobs += 1
        stats.by_status[JobStatus(status).value] += 1
        stats.by_route[route_name] += 1
        stats.handoffs += bool(handoff)
        timings = timings or {}
        if (total := _number(timings.get("total_ms"))) is not None:
            total_ms[route_name].append(total)
        # the model ran when it took time (0 for routes it did not run on), as in the metrics
        if (inference := _number(timings.get("inference_ms"))) is not None and inference > 0:
            inference_ms.append(inference)
            if (queued := _number(timings.get("queue_ms"))) is not None:
                queue_ms.append(queued)
        if isinstance(intent, dict) and isinstance(intent.get("name"), str):
            stats.intents[intent["name"]] += 1
        if isinstance(moderation, dict) and moderation.get("flagged"):
            _add_moderation_hit(moderation, stats)
    stats.total_ms = Percentiles.of(v for values in total_ms.values() for v in values)
    stats.total_ms_by_route = {
        route: Percentiles.of(values) for route, values in sorted(total_ms.items())
    }
    stats.model_answered = len(inference_ms)
    stats.queue_ms = Percentiles.of(queue_ms)
    stats.inference_ms = Percentiles.of(inference_ms)


def _add_moderation_hit(moderation: Mapping[str, Any], stats: JobStats) -> None:
    stats.flagged += 1
    stats.flagged_by_stage[str(moderation.get("stage") or "unknown")] += 1
    stats.flagged_by_action[str(moderation.get("action") or "none")] += 1
    for category in set(moderation.get("categories") or ()):
        stats.flagged_by_category[str(category)] += 1


def _add_webhooks(
    connection: Connection, in_window: Sequence[ColumnElement[bool]], stats: JobStats
) -> None:
    stats.deliveries_by_status.update({status.value: 0 for status in DeliveryStatus})
    deliveries = connection.execute(
        select(WebhookDelivery.status, func.count())
        .join(Job, Job.id == WebhookDelivery.job_id)
        .where(*in_window)
        .group_by(WebhookDelivery.status)
    )
    for status, count in deliveries:
        stats.deliveries_by_status[DeliveryStatus(status).value] = count
    failed = or_(
        WebhookAttempt.error.is_not(None),
        WebhookAttempt.status_code.is_(None),
        WebhookAttempt.status_code < 200,
        WebhookAttempt.status_code >= 300,
    )
    total, failures = connection.execute(
        select(func.count(), func.coalesce(func.sum(case((failed, 1), else_=0)), 0))
        .select_from(WebhookAttempt)
        .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
        .join(Job, Job.id == WebhookDelivery.job_id)
        .where(*in_window)
    ).one()
    stats.attempts = int(total)
    stats.failed_attempts = int(failures)
