"""The stall watchdog of the Celery workers, on a clock the test moves."""

from __future__ import annotations

import threading

from services.postprocess.stall_watchdog import Stall, StallWatchdog, Work
from tests.unit.worker.fakes import WAIT_S


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watchdog(work: list[Work], clock: Clock) -> StallWatchdog:
    """A watchdog reading the last entry of ``work`` as the worker's work now."""
    return StallWatchdog(60, lambda: work[-1], lambda _stall: None, clock=clock)


def test_work_without_progress_for_the_timeout_is_a_stall() -> None:
    clock, work = Clock(), [Work(held=2, ready=0)]
    dog = watchdog(work, clock)
    assert dog.check() is None
    clock.now += 59
    assert dog.check() is None
    clock.now += 1
    assert dog.check() == Stall(60, Work(2, 0))


def test_a_task_starting_or_finishing_restarts_the_count() -> None:
    clock, work = Clock(), [Work(held=2, ready=0)]
    dog = watchdog(work, clock)
    clock.now += 50
    dog.progress()
    assert dog.check() is None
    clock.now += 59
    assert dog.check() is None
    clock.now += 1
    assert dog.check() is not None


def test_an_idle_worker_never_stalls() -> None:
    clock, work = Clock(), [Work(held=0, ready=0)]
    dog = watchdog(work, clock)
    clock.now += 3600
    assert dog.check() is None
    work.append(Work(held=1, ready=0))  # work arrives: counted from the last idle look
    clock.now += 30
    assert dog.check() is None
    clock.now += 30
    assert dog.check() is not None


def test_messages_ready_in_its_queues_are_work_even_when_it_holds_nothing() -> None:
    # the hang of session 19: the pool threads stuck after their tasks ended, the queue full
    clock, work = Clock(), [Work(held=0, ready=189)]
    dog = watchdog(work, clock)
    dog.check()
    clock.now += 60
    assert dog.check() == Stall(60, Work(0, 189))


def test_a_broker_that_cannot_be_asked_is_no_evidence_of_a_stall() -> None:
    clock, work = Clock(), [Work(held=0, ready=None)]
    dog = watchdog(work, clock)
    clock.now += 600
    assert dog.check() is None


def test_the_watchdog_thread_reports_a_stall_once() -> None:
    stalls: list[Stall] = []
    reported = threading.Event()

    def on_stall(stall: Stall) -> None:
        stalls.append(stall)
        reported.set()

    dog = StallWatchdog(0.2, lambda: Work(held=1, ready=0), on_stall)
    dog.start()
    assert reported.wait(WAIT_S)
    dog.stop()
    assert len(stalls) == 1 and stalls[0].seconds >= 0.2
