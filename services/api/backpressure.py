"""Back-pressure: refuse new jobs (429) while the inference queue is longer than the bound,
rather than accept work that cannot be done in time.

The depth is read from the broker at most every ``REFRESH_S`` per process, so checking costs
nothing on most requests; if the broker cannot say, jobs are accepted (the outbox holds them).
"""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import Integer, bindparam, func, select

from services.api.problems import Problem, ProblemType
from shared.config import Settings
from shared.db.engine import autocommit
from shared.db.models import Job, JobStatus
from shared.logs import get_logger
from shared.messaging.broker import broker_connection
from shared.messaging.topology import INFERENCE_QUEUE, queue_depth

log = get_logger(__name__)

REFRESH_S = 0.5


class QueueGate:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._depth = 0
        self._read_at = float("-inf")

    def check(self, tenant_id: uuid.UUID | None = None, jobs: int = 1) -> None:
        """Raise a 429 problem if the inference queue is over its bound, or if ``jobs`` more
        would take the tenant past its share (``CHATQ_TENANT_MAX_OPEN_JOBS``)."""
        if tenant_id is not None:
            self._check_tenant_share(tenant_id, jobs)
        bound = self.settings.max_queue_depth
        if not bound:
            return
        depth = self._current_depth()
        if depth > bound:
            raise Problem(
                ProblemType.QUEUE_FULL,
                f"{depth} jobs are waiting for inference (limit {bound}); retry later.",
                headers={"Retry-After": "5"},
                queue_depth=depth,
            )

    def _check_tenant_share(self, tenant_id: uuid.UUID, jobs: int) -> None:
        # Counted from the jobs table (an index on tenant, status and batch), and at most cap + 1
        # rows are counted, so a tenant far over its share costs no more than one at it. Batch
        # jobs are not counted: batches have an allowance of their own (services/api/batches).
        # Two submits at the same moment may both pass at cap - 1: the cap is soft by the number
        # of concurrent submits of one tenant, which the rate limit bounds.
        cap = self.settings.tenant_max_open_jobs
        if not cap:
            return
        # a read on its own, without BEGIN and COMMIT: it is on every submit's path
        with autocommit(self.settings.database_url) as connection:
            count = connection.scalar(_OPEN_JOBS, {"tenant": tenant_id, "most": cap + 1}) or 0
        if count + jobs > cap:
            raise Problem(
                ProblemType.TENANT_QUEUE_FULL,
                f"This tenant has {count} queued or running jobs (its share is {cap}); "
                "retry when some have finished.",
                headers={"Retry-After": "5"},
                open_jobs=count,
                limit=cap,
            )

    def _current_depth(self) -> int:
        with self._lock:
            if time.monotonic() - self._read_at >= REFRESH_S:
                try:
                    with broker_connection(self.settings) as connection:
                        self._depth = queue_depth(connection, INFERENCE_QUEUE)
                except Exception as error:
                    log.warning("queue_depth_unknown", error=repr(error))
                self._read_at = time.monotonic()
            return self._depth


# Built once with parameters (``tenant``, ``most``): every submit asks it, and building it per
# submit cost more than running it.
_OPEN_JOBS = select(func.count()).select_from(
    select(Job.id)
    .where(
        Job.tenant_id == bindparam("tenant", type_=Job.__table__.c.tenant_id.type),
        Job.status.in_((JobStatus.QUEUED, JobStatus.IN_PROGRESS)),
        Job.batch_id.is_(None),
    )
    .limit(bindparam("most", type_=Integer))
    .subquery()
)
