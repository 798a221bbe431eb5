"""A batch's results as JSON lines: one line per job, in submission order, each the job as it is
now (``BatchResultLine``). Read at any time: lines of jobs not finished yet say so by their
``status``.

The answer is streamed: jobs are read ``RESULTS_CHUNK`` at a time, each chunk in a short
transaction of its own, so a slow reader of 10,000 lines holds no transaction open (on SQLite
an open transaction holds the one write lock every submit needs) and no more than a chunk in
memory.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from sqlalchemy import select

from shared.batch_view import BatchResultLine
from shared.db.engine import session_scope
from shared.db.models import Job
from shared.job_view import JobView

RESULTS_CHUNK = 500


def result_lines(database_url: str, batch_id: uuid.UUID) -> Iterator[str]:
    """The batch's result lines, a chunk of them per item (the batch is known to exist)."""
    next_index = 0
    while True:
        with session_scope(database_url) as session:
            jobs = session.scalars(
                select(Job)
                .where(Job.batch_id == batch_id, Job.batch_index >= next_index)
                .order_by(Job.batch_index)
                .limit(RESULTS_CHUNK)
            ).all()
            chunk = "".join(_line(job) for job in jobs)
        if not jobs:
            return
        yield chunk
        if len(jobs) < RESULTS_CHUNK:
            return
        next_index = (jobs[-1].batch_index or 0) + 1


def _line(job: Job) -> str:
    line = BatchResultLine(
        id=job.id, custom_id=job.custom_id, status=job.status, response=JobView.from_job(job)
    )
    return line.model_dump_json() + "\n"
