"""The batch feeder: hands batch jobs to the outbox a few at a time, and ends the batches whose
jobs have all ended.

Why a few at a time. A batch's jobs are all stored when it is accepted, but they reach
``chat.inference`` only while fewer than ``CHATQ_BATCH_FEED_DEPTH`` messages wait there.
Published at once, 10,000 jobs would stand in front of every interactive job submitted after
them (equal priorities are served in order), would keep ``CHATQ_MAX_QUEUE_DEPTH`` exceeded (so
interactive jobs would be refused) for as long as the batch runs, and their confirmed publishes
would hold the request for seconds. Released a few at a time, an interactive job waits behind
at most about ``CHATQ_BATCH_FEED_DEPTH`` batch jobs (and none of a lower priority), while the
queue is topped up every ``CHATQ_BATCH_FEED_INTERVAL_S`` so the workers never run dry.

Fair between batches: a round splits the room among the open batches, those that have had the
fewest jobs released first, so a small batch is not stuck behind a big one.

Where it runs: in every API process beside the outbox relay (services/api/wsgi.py), for the
reasons the relay does (services/api/outbox.py). A round locks the batches it releases from
(``SKIP LOCKED``: two processes never release the same jobs; SQLite runs one transaction at a
time), stores the jobs' outbox rows and moves the batch's ``released`` past them in one
transaction, then publishes them as a submit does; an unconfirmed one is left to the relay. The
processes may each fill the same room at once: the depth holds within a multiple of their
number.

Each round also ends the open batches whose jobs have all ended (a batch job cancelled on its
own, any path that does not end its batch itself): shared/batch_completion.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from services.api.outbox import Outbox
from shared.batch_completion import OPEN_BATCH_STATUSES, OPEN_JOB_STATUSES, finish_batch_if_done
from shared.config import Settings
from shared.db.engine import autocommit, session_scope
from shared.db.models import Batch, BatchStatus, Job, JobStatus, utcnow
from shared.messaging.broker import broker_connection
from shared.messaging.schemas import ChatTurn, GenerationParams, InferenceRequest
from shared.messaging.topology import INFERENCE_QUEUE, queue_depth
from shared.periodic import PeriodicWork

MAX_BATCHES_A_ROUND = 200


@dataclass(frozen=True)
class OpenBatches:
    """What a round finds to do."""

    finished: list[uuid.UUID]  # open, but none of their jobs is any more
    unreleased: bool  # some batch in progress has jobs not yet handed to the outbox
    any_open: bool  # some batch is open at all


# With no batch open, rounds come this far apart, or at once when this process accepts a batch
# (``batch_accepted``): every API process looking every CHATQ_BATCH_FEED_INTERVAL_S for batches
# that are not there was most of an idle API's CPU. Another process's new batch is joined
# within this time; its own process starts releasing it at once.
IDLE_ROUND_S = 2.0


class BatchFeeder(PeriodicWork):
    name = "batch_feeder"

    def __init__(self, settings: Settings, outbox: Outbox) -> None:
        super().__init__(settings.batch_feed_interval_s)
        self.settings = settings
        self.outbox = outbox
        self._idle = False  # the last round found no open batch

    def start(self) -> None:
        global _running
        _running = self
        super().start()

    def wait_s(self) -> float:
        return max(self.interval_s, IDLE_ROUND_S) if self._idle else self.interval_s

    def run_once(self) -> int:
        """One round: end finished batches, then release jobs while the queue has room;
        returns how many batches were ended and jobs released."""
        found = find_open_batches(self.settings)
        self._idle = not found.any_open
        ended = end_batches(self.settings, found.finished)
        if not found.unreleased:
            return ended
        room = self.settings.batch_feed_depth - self._waiting()
        if room <= 0:
            return ended
        return ended + release_jobs(self.settings, self.outbox, room)

    def _waiting(self) -> int:
        with broker_connection(self.settings) as connection:
            return queue_depth(connection, INFERENCE_QUEUE)


# Built once and run outside a transaction (one statement, one round trip): every API process
# asks it every CHATQ_BATCH_FEED_INTERVAL_S whether or not any batch is open, and through a
# session with BEGIN and COMMIT it was most of an idle API's CPU (17 of 27 ms a second).
_OPEN_BATCHES = (
    select(
        Batch.id,
        Batch.status,
        Batch.released < Batch.total,
        select(Job.id).where(Job.batch_id == Batch.id, Job.status.in_(OPEN_JOB_STATUSES)).exists(),
    )
    .where(Batch.status.in_(OPEN_BATCH_STATUSES))
    .limit(MAX_BATCHES_A_ROUND)
)


def find_open_batches(settings: Settings) -> OpenBatches:
    with autocommit(settings.database_url) as connection:
        rows = connection.execute(_OPEN_BATCHES).all()
    return OpenBatches(
        finished=[batch_id for batch_id, _status, _unreleased, open_jobs in rows if not open_jobs],
        unreleased=any(
            status is BatchStatus.IN_PROGRESS and unreleased for _id, status, unreleased, _ in rows
        ),
        any_open=bool(rows),
    )


_running: BatchFeeder | None = None  # this process's feeder (services/api/wsgi.py starts it)


def batch_accepted() -> None:
    """This process stored a batch: its feeder starts on it now, not after an idle wait."""
    if _running is not None:
        _running.wake()


def end_batches(settings: Settings, batch_ids: list[uuid.UUID]) -> int:
    """End these batches if they are done (the delivery sweeper starts their webhooks)."""
    if not batch_ids:
        return 0
    now = utcnow()
    with session_scope(settings.database_url) as session:
        for batch_id in batch_ids:
            finish_batch_if_done(session, batch_id, now, first_attempt_at=now)
    return len(batch_ids)


def release_jobs(settings: Settings, outbox: Outbox, room: int) -> int:
    """Hand up to ``room`` queued batch jobs to the outbox, shared among the open batches in
    submission order within each; returns how many were published or left to the relay."""
    now = utcnow()
    stored: list[tuple[uuid.UUID, dict[str, Any], int]] = []
    with session_scope(settings.database_url) as session:
        batches = session.scalars(
            select(Batch)
            .where(Batch.status == BatchStatus.IN_PROGRESS, Batch.released < Batch.total)
            .order_by(Batch.released, Batch.created_at)
            .limit(MAX_BATCHES_A_ROUND)
            .with_for_update(skip_locked=True)
        ).all()
        for batch, share in zip(batches, _shares(room, len(batches)), strict=True):
            if not share:
                break
            for job in _next_jobs(session, batch, share):
                batch.released = job.batch_index + 1
                if job.status is not JobStatus.QUEUED:
                    continue  # cancelled meanwhile: nothing to run
                payload = _inference_request(job, settings).model_dump(mode="json")
                row_id = outbox.add(session, job.id, payload, job.priority, now)
                stored.append((row_id, payload, job.priority))
    for row_id, payload, priority in stored:
        outbox.publish(row_id, payload, priority)
    return len(stored)


def _shares(room: int, batches: int) -> list[int]:
    """``room`` split among ``batches``, the first ones getting the remainder."""
    if not batches:
        return []
    base, extra = divmod(room, batches)
    return [base + (1 if place < extra else 0) for place in range(batches)]


def _next_jobs(session: Session, batch: Batch, count: int) -> list[Row[Any]]:
    return list(
        session.execute(
            select(
                Job.id,
                Job.status,
                Job.query,
                Job.history,
                Job.params,
                Job.session_id,
                Job.priority,
                Job.deadline_at,
                Job.created_at,
                Job.batch_index,
            )
            .where(Job.batch_id == batch.id, Job.batch_index >= batch.released)
            .order_by(Job.batch_index)
            .limit(count)
        ).all()
    )


def _inference_request(job: Row[Any], settings: Settings) -> InferenceRequest:
    """The request ``POST /v1/jobs`` would have published for this job."""
    params = job.params
    return InferenceRequest(
        job_id=job.id,
        query=job.query,
        history=[ChatTurn(role=turn["role"], content=turn["content"]) for turn in job.history],
        session_id=job.session_id,
        params=GenerationParams(
            max_new_tokens=params.get("max_new_tokens") or settings.default_max_new_tokens,
            temperature=params["temperature"],
            top_p=params["top_p"],
            seed=params.get("seed"),
            stop=tuple(params.get("stop") or ()),
        ),
        priority=job.priority,
        deadline_at=job.deadline_at,
        submitted_at=job.created_at,
    )
