"""A Celery worker that has work and starts or finishes no task for too long exits, so that its
supervisor starts it again and the broker hands its unacknowledged tasks to a live worker.

Why: a Celery worker can wedge with its process alive. Session 19 found pool threads blocked for
good in ``basic_qos`` after a RabbitMQ restart, holding the prefetch lock: the worker took no
more tasks while its ``/metrics`` still answered, so no probe saw it, and the jobs it should have
stored stayed ``in_progress``. Restarting such a worker is always safe: both tasks are
idempotent, and what it held unacknowledged goes back to the queue when its connection closes.

"Has work" is either of:
- tasks the worker holds that are due: waiting for a pool thread or running (Celery's own
  ``reserved_requests``; a task waiting for its retry countdown is not in it, and Celery empties
  it when a connection is lost);
- messages ready in a queue it consumes (a passive declare on a connection of the watchdog's
  own): the hang above left the worker holding nothing in Celery's view, with the queue full.

"Progress" is a task starting or finishing. Every task here ends within seconds (a webhook
attempt within ``CHATQ_WEBHOOK_TIMEOUT_S``), so a worker with work and no progress for
``CHATQ_STALL_TIMEOUT_S`` is wedged. When the watchdog cannot ask the broker, it counts that as
no evidence: the worker cannot make progress without a broker, and a restart would not help.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.logs import get_logger

log = get_logger(__name__)

EXIT_STALLED = 70  # EX_SOFTWARE: the supervisor (chatq up, compose, Kubernetes) restarts it
LONGEST_CHECK_INTERVAL_S = 10.0


@dataclass(frozen=True)
class Work:
    """What a worker has to do now: tasks it holds that are due, messages ready for it."""

    held: int
    ready: int | None  # None: the broker could not be asked

    @property
    def any(self) -> bool | None:
        """Whether there is work; ``None`` when it cannot be told."""
        if self.held:
            return True
        return None if self.ready is None else self.ready > 0


@dataclass(frozen=True)
class Stall:
    seconds: float  # with work and without progress
    work: Work


class StallWatchdog:
    def __init__(
        self,
        stall_after_s: float,
        work: Callable[[], Work],
        on_stall: Callable[[Stall], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_after_s = stall_after_s
        self._work = work
        self._on_stall = on_stall
        self._clock = clock
        self._progress = 0
        self._progress_lock = threading.Lock()
        self._progress_seen = 0
        self._idle_or_progress_at = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def progress(self) -> None:
        """A task started or finished (from any thread)."""
        with self._progress_lock:
            self._progress += 1

    def check(self) -> Stall | None:
        """The stall, if the worker has had work and made no progress for ``stall_after_s``."""
        now = self._clock()
        with self._progress_lock:
            progress = self._progress
        work = self._work()
        if progress != self._progress_seen or not work.any:
            self._progress_seen = progress
            self._idle_or_progress_at = now
            return None
        stalled_for = now - self._idle_or_progress_at
        return Stall(stalled_for, work) if stalled_for >= self.stall_after_s else None

    def start(self) -> None:
        interval = min(LONGEST_CHECK_INTERVAL_S, self.stall_after_s / 4)

        def watch() -> None:
            while not self._stop.wait(interval):
                try:
                    stall = self.check()
                except Exception as error:  # a bug here must not end a healthy worker
                    log.warning("stall_check_failed", error=repr(error))
                    continue
                if stall is not None:
                    self._on_stall(stall)
                    return

        self._thread = threading.Thread(target=watch, name="stall-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
