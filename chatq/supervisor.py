"""What ``chatq up`` does while it runs: a child that dies is started again, after a pause that
grows while it keeps dying, instead of taking the whole stack down; a child that dies too often
in a short time (a crash loop: a bad setting, a broken model) stops the stack with a message
that names it, because restarting it forever would only hide the fault.

Nothing is lost by a restart: an inference worker's unacknowledged messages go back to the
queue when its connection drops and another worker (or its successor) takes them; a
post-processor acknowledges a task only once it has stored the result.
"""

from __future__ import annotations

import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.logs import get_logger

log = get_logger(__name__)

# Pauses before the 1st, 2nd, … restart of a child that keeps dying; a child that has run
# ``stable_after_s`` since its last start begins again at the first.
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class CrashLoopError(RuntimeError):
    """A child died too often in too short a time."""


@dataclass
class _Watched:
    started_at: float
    quick_deaths: int = 0  # deaths since it last ran long enough to count as stable
    restart_at: float | None = None  # when it is due to start again (it is dead meanwhile)
    last_status: int | None = None
    deaths: deque[float] = field(default_factory=deque)  # times of recent deaths


class Supervisor:
    def __init__(
        self,
        processes: dict[str, subprocess.Popen[bytes]],
        restart: Callable[[str], subprocess.Popen[bytes]],
        *,
        backoff_s: tuple[float, ...] = RESTART_BACKOFF_S,
        stable_after_s: float = 60.0,
        max_deaths: int = 5,
        window_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``processes``: the running children by name (updated in place on restarts);
        ``restart(name)`` starts a child again and returns it."""
        self.processes = processes
        self._restart = restart
        self.backoff_s = backoff_s
        self.stable_after_s = stable_after_s
        self.max_deaths = max_deaths
        self.window_s = window_s
        self._clock = clock
        now = clock()
        self._watched = {name: _Watched(started_at=now) for name in processes}
        self.restarts: dict[str, int] = {name: 0 for name in processes}

    def poll(self) -> None:
        """Notice the children that died and start those that are due; raises
        ``CrashLoopError`` when one died ``max_deaths`` times within ``window_s``."""
        now = self._clock()
        for name, process in list(self.processes.items()):
            watched = self._watched[name]
            if watched.restart_at is None:
                status = process.poll()
                if status is not None:
                    self._died(name, watched, status, now)
            elif now >= watched.restart_at:
                self.processes[name] = self._restart(name)
                self.restarts[name] += 1
                watched.restart_at = None
                watched.started_at = now
                log.warning("process_restarted", process=name, restarts=self.restarts[name])

    def _died(self, name: str, watched: _Watched, status: int, now: float) -> None:
        if now - watched.started_at >= self.stable_after_s:
            watched.quick_deaths = 0
        watched.deaths.append(now)
        while watched.deaths and now - watched.deaths[0] > self.window_s:
            watched.deaths.popleft()
        watched.last_status = status
        if len(watched.deaths) >= self.max_deaths:
            raise CrashLoopError(
                f"{name} exited {len(watched.deaths)} times within {self.window_s:g} s (last "
                f"status {status}); stopping the stack. Its log above says why; fix that and "
                "start again."
            )
        delay = self.backoff_s[min(watched.quick_deaths, len(self.backoff_s) - 1)]
        watched.quick_deaths += 1
        watched.restart_at = now + delay
        log.error("process_exited", process=name, status=status, restart_in_s=delay)
