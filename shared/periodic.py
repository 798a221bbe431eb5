"""A background thread that does one round of work every interval (relays, sweepers)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

from shared.logs import get_logger

log = get_logger(__name__)


class PeriodicWork(ABC):
    """Calls ``run_once`` every ``interval_s`` until stopped; a failing round is logged and the
    next one tried (the database or broker may be coming back)."""

    name: str  # the thread's name and the log events' prefix

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stopping = threading.Event()
        self._woken = threading.Event()  # set by a stop or a wake: the wait ends at once
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)

    @abstractmethod
    def run_once(self) -> int:
        """One round; returns how many items it handled."""

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Run the next round now rather than when the wait ends."""
        self._woken.set()

    def wait_s(self) -> float:
        """How long to wait before the next round: ``interval_s`` (a subclass may wait longer
        while it has nothing to do)."""
        return self.interval_s

    def stop(self) -> None:
        self._stopping.set()
        self._woken.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            self._woken.wait(self.wait_s())
            self._woken.clear()
            if self._stopping.is_set():
                return
            try:
                handled = self.run_once()
            except Exception as error:
                log.warning(f"{self.name}_failed", error=repr(error))
                continue
            if handled:
                log.info(f"{self.name}_handled", count=handled)
