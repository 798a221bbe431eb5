"""Prepared jobs waiting for the engine: the hand-over from the preparer thread to the engine
thread.

The preparer keeps at most ``capacity`` jobs here (a batch ahead of the engine, no more), so
the rest wait in the batcher, where priority and prompt length decide who goes next. Jobs stay
in the groups they were prepared in, so that static batching can take one whole batch.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from services.worker.engine import GenerationRequest
from services.worker.pending_job import PendingJob


@dataclass(frozen=True)
class ReadyJob:
    pending: PendingJob
    generation: GenerationRequest  # its request_id is the pending job's key


class ReadyQueue:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._groups: deque[list[ReadyJob]] = deque()
        self._count = 0
        self._changed = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        with self._changed:
            return self._count

    def wait_for_room(self, at_least: int, timeout_s: float) -> int:
        """How many more jobs fit, once at least ``at_least`` do; 0 if not within
        ``timeout_s``."""
        with self._changed:
            self._changed.wait_for(lambda: self.capacity - self._count >= at_least, timeout_s)
            room = self.capacity - self._count
            return room if room >= at_least else 0

    def put(self, group: list[ReadyJob]) -> None:
        if not group:
            return
        with self._changed:
            self._groups.append(group)
            self._count += len(group)
            self._changed.notify_all()

    def take(
        self, limit: int, timeout_s: float, *, whole_group: bool = False
    ) -> list[ReadyJob] | None:
        """Up to ``limit`` jobs, oldest first (``whole_group``: the oldest group, as prepared).

        ``[]`` if none is ready within ``timeout_s``; ``None`` once closed and empty.
        """
        with self._changed:
            self._changed.wait_for(lambda: self._groups or self._closed, timeout_s)
            if not self._groups:
                return None if self._closed else []
            if whole_group:
                taken = self._groups.popleft()
            else:
                taken = []
                while self._groups and len(taken) < limit:
                    head, wanted = self._groups[0], limit - len(taken)
                    taken.extend(head[:wanted])
                    if len(head) <= wanted:
                        self._groups.popleft()
                    else:
                        self._groups[0] = head[wanted:]
            self._count -= len(taken)
            self._changed.notify_all()
            return taken

    def close(self) -> None:
        """No more jobs will come: ``take`` returns ``None`` once the queue is empty."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def clear(self) -> list[ReadyJob]:
        """Remove and return everything waiting (its messages died with their channel)."""
        with self._changed:
            dropped = [job for group in self._groups for job in group]
            self._groups.clear()
            self._count = 0
            self._changed.notify_all()
            return dropped
