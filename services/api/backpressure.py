"""Back-pressure: refuse new jobs (429) while the inference queue is longer than the bound,
rather than accept work that cannot be done in time.

The depth is read from the broker at most every ``REFRESH_S`` per process, so checking costs
nothing on most requests; if the broker cannot say, jobs are accepted (the outbox holds them).
"""

from __future__ import annotations

import threading
import time

from services.api.problems import Problem
from shared.config import Settings
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

    def check(self) -> None:
        """Raise a 429 problem if the inference queue is over its bound."""
        bound = self.settings.max_queue_depth
        if not bound:
            return
        depth = self._current_depth()
        if depth > bound:
            raise Problem(
                429, "queue-full", "Too many jobs waiting",
                f"{depth} jobs are waiting for inference (limit {bound}); retry later.",
                headers={"Retry-After": "5"}, queue_depth=depth,
            )  # fmt: skip

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
