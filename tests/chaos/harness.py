"""What the chaos tests share: a stack on private servers whose processes can be killed and
replaced one by one, a client that submits like a careful backend, and the final count.

The client gives every logical job its own ``Idempotency-Key`` and retries refused or
unanswered submissions (503, 429, connection errors) with the same key, so a job is accepted
exactly once however the servers behave. The count then compares what was accepted with what
the database says: jobs never completed are lost, jobs with more than one transcript or
webhook event were completed twice.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from chatq.demo import free_port
from chatq.stack import Stack
from shared.api_keys import IssuedKey, create_api_key
from shared.db.engine import dispose_engine, session_scope
from shared.db.models import Job, JobStatus, Message, WebhookDelivery
from shared.knowledge.schemas import TenantSettings
from shared.knowledge.store import configure_tenant
from tests.chaos.servers import PrivatePostgres, PrivateRabbitMQ
from tests.conftest import settings_from_env

TERMINAL = {"completed", "failed", "cancelled", "expired"}


class ChaosStack:
    """The whole stack as separate processes, on a database and virtual host of its own."""

    def __init__(
        self,
        name: str,
        model_dir: Path,
        postgres: PrivatePostgres,
        rabbitmq: PrivateRabbitMQ,
        **overrides: str,
    ) -> None:
        database_url = postgres.create_database(name)
        self.name = name
        self.rabbitmq = rabbitmq
        rabbitmq.ctl("add_vhost", name)
        rabbitmq.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        env = {
            "CHATQ_DATABASE_URL": database_url,
            "CHATQ_BROKER_URL": rabbitmq.url.rstrip("/") + "/" + name,
            "CHATQ_MODEL_DIR": str(model_dir),
            "CHATQ_API_PORT": str(free_port()),
            "CHATQ_API_PROCESSES": "1",
            "CHATQ_LOG_LEVEL": "WARNING",
            "CHATQ_WEBHOOK_ALLOW_PRIVATE": "true",
            "CHATQ_OUTBOX_GRACE_S": "1",
            "CHATQ_OUTBOX_RELAY_INTERVAL_S": "0.5",
            "CHATQ_WEBHOOK_SWEEP_INTERVAL_S": "0.2",
            "CHATQ_DEFAULT_MAX_NEW_TOKENS": "24",
            **{f"CHATQ_{k.upper()}": v for k, v in overrides.items()},
        }
        self.settings = settings_from_env(env)
        self.stack = Stack(self.settings, env)
        self.stack.start()
        self.stack.wait_ready(timeout_s=120)
        self.key: IssuedKey = create_api_key(database_url, "chaos")
        configure_tenant(database_url, self.key.tenant, TenantSettings(llm_fallback=True))

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    def kill(self, name: str) -> None:
        """kill -9 one process of the stack."""
        process = self.stack.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def replace(self, killed: str, new_name: str) -> None:
        """Start a fresh process of the kind ``killed`` was."""
        kind = killed.split("-")[0]
        spec = next(s for s in self.stack.specs() if s.name.startswith(kind))
        self.stack.spawn(spec, new_name)

    def count_in_progress(self) -> int:
        with session_scope(self.settings.database_url) as session:
            return (
                session.scalar(select(func.count()).where(Job.status == JobStatus.IN_PROGRESS)) or 0
            )

    def queues(self) -> str:
        """The vhost's queues as RabbitMQ sees them (ready, unacknowledged, consumers): where
        jobs that never finished are sitting, for a failure's report."""
        columns = ("name", "messages_ready", "messages_unacknowledged", "consumers")
        listed = self.rabbitmq.ctl(
            "list_queues", "-p", self.name, "--no-table-headers", "--quiet", *columns, check=False
        )
        rows = [" ".join(line.split()) for line in listed.stdout.splitlines() if line.strip()]
        return "; ".join(sorted(rows)) or (listed.stderr.strip() or "no queues listed")

    def unfinished(self, job_ids: list[uuid.UUID]) -> str:
        """For a failure's report: how often workers took the jobs that never finished (many
        times: they loop back to the queue; once: a later stage holds them) and the queues."""
        with session_scope(self.settings.database_url) as session:
            attempts = Counter(
                session.scalars(
                    select(Job.attempts).where(
                        Job.id.in_(job_ids), Job.status != JobStatus.COMPLETED
                    )
                ).all()
            )
        return (
            f"unfinished jobs by attempts {dict(sorted(attempts.items()))}; "
            f"queues (ready, unacked, consumers): {self.queues()}"
        )

    def close(self) -> None:
        self.stack.stop()
        dispose_engine(self.settings.database_url)


@dataclass
class LoadClient:
    base_url: str
    key: str
    webhook_url: str | None = None
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> job id
    refusals: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, index: int, run: str, give_up_s: float = 120) -> None:
        """Submit logical job ``index`` until it is accepted."""
        idempotency_key = f"{run}-{index}"
        body: dict[str, Any] = {"query": f"Where is parcel {index}? It was due on Monday."}
        if self.webhook_url:
            body["webhook_url"] = self.webhook_url
        headers = {"Authorization": f"Bearer {self.key}", "Idempotency-Key": idempotency_key}
        give_up_at = time.monotonic() + give_up_s
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while time.monotonic() < give_up_at:
                try:
                    response = client.post("/v1/jobs", json=body, headers=headers)
                except httpx.HTTPError as error:
                    self._refused(type(error).__name__)
                else:
                    if response.status_code == 202:
                        with self._lock:
                            self.accepted[idempotency_key] = response.json()["id"]
                        return
                    self._refused(str(response.status_code))
                time.sleep(0.2)
        raise AssertionError(f"job {idempotency_key} was never accepted: {self.refusals}")

    def _refused(self, reason: str) -> None:
        with self._lock:
            self.refusals[reason] += 1

    def submit_many(self, count: int, run: str, concurrency: int = 8) -> threading.Thread:
        """Submit ``count`` jobs from ``concurrency`` threads, in the background."""

        def work() -> None:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                list(pool.map(lambda i: self.submit(i, run), range(count)))

        thread = threading.Thread(target=work, name="load")
        thread.start()
        return thread


@dataclass
class ChaosReport:
    scenario: str
    submitted: int
    accepted: int
    completed: int
    lost: int
    duplicated: int
    broken_transcripts: int  # completed without exactly its two turns
    other_states: dict[str, int]
    recovery_s: float | None
    refusals: dict[str, int]
    notes: str = ""

    def line(self) -> str:
        recovery = f"{self.recovery_s:.1f} s" if self.recovery_s is not None else "-"
        return (
            f"{self.scenario}: submitted {self.submitted}, accepted {self.accepted}, completed "
            f"{self.completed}, lost {self.lost}, duplicated {self.duplicated}, broken "
            f"transcripts {self.broken_transcripts}, "
            f"time to recover {recovery}; refused submits {dict(self.refusals)} {self.notes}"
        )


REPORTS: list[ChaosReport] = []


def wait_until_settled(stack: ChaosStack, job_ids: list[str], timeout_s: float = 180) -> None:
    """Until every accepted job is terminal (or the time is up: the count will say lost)."""
    give_up_at = time.monotonic() + timeout_s
    ids = [uuid.UUID(i) for i in job_ids]
    while time.monotonic() < give_up_at:
        try:
            with session_scope(stack.settings.database_url) as session:
                open_jobs = session.scalar(
                    select(func.count()).where(
                        Job.id.in_(ids),
                        Job.status.in_([JobStatus.QUEUED, JobStatus.IN_PROGRESS]),
                    )
                )
        except Exception:
            open_jobs = None  # the database may be coming back
        if open_jobs == 0:
            return
        time.sleep(0.5)


def first_completion_after(stack: ChaosStack, moment: float) -> float | None:
    """Seconds from ``moment`` (a time.time()) to the first job completed after it."""
    from datetime import UTC, datetime

    since = datetime.fromtimestamp(moment, UTC)
    with session_scope(stack.settings.database_url) as session:
        first = session.scalar(
            select(func.min(Job.completed_at)).where(
                Job.completed_at > since, Job.status == JobStatus.COMPLETED
            )
        )
    return None if first is None else round((first - since).total_seconds(), 2)


def count(
    scenario: str,
    stack: ChaosStack,
    client: LoadClient,
    submitted: int,
    recovered_from: float | None,
    *,
    expected_failures: set[str] | None = None,
    notes: str = "",
) -> ChaosReport:
    """The final count (see the module docstring); also recorded for the summary."""
    ids = [uuid.UUID(i) for i in client.accepted.values()]
    with session_scope(stack.settings.database_url) as session:
        statuses = dict(session.execute(select(Job.id, Job.status).where(Job.id.in_(ids))).all())
        transcripts = dict(
            session.execute(
                select(Message.job_id, func.count()).where(Message.job_id.in_(ids))
                .group_by(Message.job_id)
            ).all()
        )  # fmt: skip
        events = dict(
            session.execute(
                select(WebhookDelivery.job_id, func.count())
                .where(WebhookDelivery.job_id.in_(ids))
                .group_by(WebhookDelivery.job_id)
            ).all()
        )
    expected_failures = expected_failures or set()
    states = Counter(statuses.get(job_id, "missing") for job_id in ids)
    completed = states.pop(JobStatus.COMPLETED, 0)
    lost = sum(
        1
        for job_id in ids
        if statuses.get(job_id) not in {JobStatus.COMPLETED}
        and str(job_id) not in expected_failures
    )
    duplicated = sum(
        1 for job_id in ids if transcripts.get(job_id, 0) > 2 or events.get(job_id, 0) > 1
    )
    broken = sum(
        1
        for job_id in ids
        if statuses.get(job_id) is JobStatus.COMPLETED and transcripts.get(job_id, 0) != 2
    )
    if lost:  # say where the unfinished jobs sit and how often workers took them
        notes = f"{notes} {stack.unfinished(ids)}".strip()
    report = ChaosReport(
        scenario=scenario,
        submitted=submitted,
        accepted=len(ids),
        completed=completed,
        lost=lost,
        duplicated=duplicated,
        broken_transcripts=broken,
        other_states={str(k): v for k, v in states.items()},
        recovery_s=first_completion_after(stack, recovered_from) if recovered_from else None,
        refusals=dict(client.refusals),
        notes=notes,
    )
    REPORTS.append(report)
    print(report.line())
    return report


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    give_up_at = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > give_up_at:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
