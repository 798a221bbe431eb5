"""The supervisor of ``chatq up`` with real child processes and a clock the test moves."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from chatq.supervisor import CrashLoopError, Supervisor

EXIT_AT_ONCE = [sys.executable, "-c", "import sys; sys.exit(3)"]
RUN_LONG = [sys.executable, "-c", "import time; time.sleep(60)"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Children:
    """Starts each child with a command the test chooses, and remembers every start."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, _name: str = "worker-0") -> subprocess.Popen[bytes]:
        process = subprocess.Popen(self.command)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.kill()
            process.wait()


@pytest.fixture
def children() -> Iterator[Children]:
    started = Children(EXIT_AT_ONCE)
    yield started
    started.stop_all()


def died(process: subprocess.Popen[bytes]) -> None:
    process.wait(timeout=10)


def test_a_child_that_dies_is_started_again_after_a_growing_pause(children: Children) -> None:
    clock = Clock()
    processes = {"worker-0": children.start()}
    supervisor = Supervisor(processes, children.start, backoff_s=(1.0, 5.0), clock=clock)
    died(processes["worker-0"])
    supervisor.poll()  # noticed: due in 1 s
    assert len(children.started) == 1
    clock.now = 1.0
    supervisor.poll()
    assert len(children.started) == 2 and processes["worker-0"] is children.started[1]
    died(processes["worker-0"])
    clock.now = 1.5
    supervisor.poll()  # died quickly again: due 5 s later, not 1
    clock.now = 6.0
    supervisor.poll()
    assert len(children.started) == 2
    clock.now = 6.5
    supervisor.poll()
    assert len(children.started) == 3
    assert supervisor.restarts == {"worker-0": 2}


def test_a_child_that_ran_a_while_restarts_at_the_first_pause_again(children: Children) -> None:
    clock = Clock()
    processes = {"worker-0": children.start()}
    supervisor = Supervisor(
        processes, children.start, backoff_s=(1.0, 30.0), stable_after_s=60, clock=clock
    )
    died(processes["worker-0"])
    supervisor.poll()
    clock.now = 1.0
    supervisor.poll()  # restarted; it "runs" for two minutes
    died(processes["worker-0"])
    clock.now = 121.0
    supervisor.poll()
    clock.now = 122.0
    supervisor.poll()
    assert len(children.started) == 3  # 1 s later, not 30


def test_a_crash_loop_stops_the_stack_naming_the_child(children: Children) -> None:
    clock = Clock()
    processes = {"worker-0": children.start()}
    supervisor = Supervisor(
        processes, children.start, backoff_s=(0.1,), max_deaths=3, window_s=60, clock=clock
    )
    with pytest.raises(
        CrashLoopError, match=r"worker-0 exited 3 times within 60 s \(last status 3\)"
    ):
        for _ in range(10):
            died(processes["worker-0"])
            supervisor.poll()
            clock.now += 0.1
            supervisor.poll()
    assert len(children.started) == 3


def test_a_living_child_is_left_alone() -> None:
    children = Children(RUN_LONG)
    try:
        processes = {"api": children.start()}
        supervisor = Supervisor(processes, children.start)
        for _ in range(3):
            supervisor.poll()
        assert children.started == [processes["api"]] and supervisor.restarts == {"api": 0}
    finally:
        children.stop_all()
