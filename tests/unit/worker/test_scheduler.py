"""The engine scheduler with a fake engine: when jobs start, where they are prepared, what
becomes of their messages. No broker: settlements are read from the fake messages."""

from __future__ import annotations

import select
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from services.worker.scheduler import EngineScheduler
from services.worker.settlements import SettlementQueue, Settler
from shared.config import BatchingMode, Settings
from tests.unit.worker.fakes import (
    WAIT_S,
    FakeEngine,
    FakeMessage,
    FakeProcessor,
    FakeSender,
    pending,
    wait_until,
)

LONG_WAIT_MS = 60_000  # far longer than any test waits: a job that waited for it would hang


class Running:
    def __init__(
        self, engine: FakeEngine, batching: BatchingMode, max_batch_size: int = 8, failing: int = 0
    ) -> None:
        self.engine = engine
        self.processor = FakeProcessor(engine, failing=failing)
        self.sender = FakeSender()
        self.settlements = SettlementQueue()
        settings = Settings(
            max_batch_size=max_batch_size, max_wait_ms=LONG_WAIT_MS, batching=batching
        )
        self.scheduler = EngineScheduler(
            settings, self.processor, Settler(self.sender, self.settlements), retry_pause_s=0
        )
        self.scheduler.start()

    def settled(self, message: FakeMessage) -> list[str]:
        self.settlements.apply()
        return message.settlements

    def stop(self) -> None:
        self.scheduler.close()
        self.scheduler.join(WAIT_S)
        assert self.scheduler.finished


@pytest.fixture
def continuous() -> Iterator[Running]:
    running = Running(FakeEngine(gated_steps=True), BatchingMode.CONTINUOUS)
    yield running
    assert running.engine.step_permits is not None
    running.engine.step_permits.release(1000)
    running.stop()


def test_an_idle_engine_starts_a_lone_job_at_once(continuous: Running) -> None:
    job = pending(new_tokens=1)
    continuous.scheduler.submit(job)
    # max_wait is a minute: had the job waited for company, it would not be done yet
    assert continuous.sender.wait_for(1)
    assert continuous.engine.admissions == [[job.key]]
    assert continuous.settled(job.message) == ["ack"]


def test_later_jobs_join_the_running_batch_between_steps(continuous: Running) -> None:
    first, second = pending(new_tokens=3), pending(new_tokens=1)
    continuous.scheduler.submit(first)
    assert continuous.engine.admitted.acquire(timeout=WAIT_S)  # first is decoding, step held
    continuous.scheduler.submit(second)
    assert wait_until(lambda: len(continuous.scheduler.ready) == 1)  # prepared meanwhile
    assert continuous.engine.step_permits is not None
    continuous.engine.step_permits.release(10)
    assert continuous.sender.wait_for(2)
    assert continuous.engine.admissions == [[first.key], [second.key]]
    assert continuous.engine.active_at_admission == [0, 1]  # second joined first's batch


def test_preparing_happens_off_the_engine_thread_while_it_decodes(continuous: Running) -> None:
    decoding, slow = pending(new_tokens=3), pending("slow: a long history to read")
    continuous.scheduler.submit(decoding)
    assert continuous.engine.admitted.acquire(timeout=WAIT_S)
    continuous.scheduler.submit(slow)
    assert continuous.processor.slow_prepare_started.wait(WAIT_S)
    assert continuous.engine.step_permits is not None
    continuous.engine.step_permits.release(10)
    # the decoding job finishes while the other one's preparation is still held
    assert continuous.sender.wait_for(1)
    assert [o.job_id for o in continuous.sender.outcomes] == [decoding.request.job_id]
    continuous.processor.slow_gate.set()
    assert continuous.sender.wait_for(2)
    assert set(continuous.processor.prepare_threads) == {"preparer"}
    assert continuous.engine.threads == {"engine"}


def test_routed_answers_are_sent_and_acknowledged_without_the_engine(
    continuous: Running,
) -> None:
    job = pending("routed: what are your opening hours?")
    continuous.scheduler.submit(job)
    assert continuous.sender.wait_for(1)
    assert wait_until(lambda: continuous.settled(job.message) == ["ack"])
    assert continuous.engine.admissions == []


def test_a_failed_preparation_requeues_its_jobs_and_the_next_one_runs() -> None:
    running = Running(FakeEngine(), BatchingMode.CONTINUOUS, failing=1)
    try:
        unlucky = pending(new_tokens=1)
        running.scheduler.submit(unlucky)
        assert wait_until(lambda: running.settled(unlucky.message) == ["requeue"])
        lucky = pending(new_tokens=1)
        running.scheduler.submit(lucky)
        assert running.sender.wait_for(1)
        assert wait_until(lambda: running.settled(lucky.message) == ["ack"])
    finally:
        running.stop()


def test_static_batching_waits_for_a_full_batch_and_runs_it_whole() -> None:
    running = Running(FakeEngine(), BatchingMode.STATIC, max_batch_size=2)
    try:
        first, second = pending(new_tokens=2), pending(new_tokens=4)
        running.scheduler.submit(first)
        running.scheduler.submit(second)
        assert running.sender.wait_for(2)
        # max_wait is a minute: the batch closed because it was full, and ran as one
        assert running.engine.admissions == [[first.key, second.key]]
    finally:
        running.stop()


def test_closing_finishes_what_is_prepared_and_leaves_the_rest(continuous: Running) -> None:
    decoding = pending(new_tokens=2)
    continuous.scheduler.submit(decoding)
    assert continuous.engine.admitted.acquire(timeout=WAIT_S)
    ready = pending(new_tokens=1)
    continuous.scheduler.submit(ready)
    assert wait_until(lambda: len(continuous.scheduler.ready) == 1)
    continuous.scheduler.close()
    assert not continuous.scheduler.submit(pending())  # closed: it stays with the broker
    assert continuous.engine.step_permits is not None
    continuous.engine.step_permits.release(10)
    continuous.scheduler.join(WAIT_S)
    assert continuous.scheduler.finished
    assert continuous.settled(decoding.message) == ["ack"]
    assert continuous.settled(ready.message) == ["ack"]  # claimed already, so finished


def test_after_a_lost_connection_prepared_jobs_are_dropped_and_forgotten(
    continuous: Running,
) -> None:
    decoding = pending(new_tokens=2)
    continuous.scheduler.submit(decoding)
    assert continuous.engine.admitted.acquire(timeout=WAIT_S)
    ready = pending(new_tokens=1)
    continuous.scheduler.submit(ready)
    assert wait_until(lambda: len(continuous.scheduler.ready) == 1)
    assert continuous.scheduler.drop_waiting() == 1
    assert continuous.processor.forgotten == [ready.key]
    assert continuous.engine.step_permits is not None
    continuous.engine.step_permits.release(10)
    assert continuous.sender.wait_for(1)
    assert continuous.engine.admissions == [[decoding.key]]


def test_a_closed_idle_scheduler_wakes_the_channel_thread_when_it_finishes() -> None:
    # The channel's thread waits for ``finished`` on the settlement pipe, as the consumer does;
    # with nothing left to settle, only the ending threads can wake it, and once they have,
    # ``finished`` must already say so (else it sleeps a whole idle wake-up).
    running = Running(FakeEngine(), BatchingMode.CONTINUOUS)
    running.settlements.apply()  # nothing queued: the pipe is empty
    running.scheduler.close()
    for _ in range(2):  # a wake-up per thread (preparer, engine) at most
        assert select.select([running.settlements], [], [], WAIT_S)[0] == [running.settlements]
        running.settlements.apply()
        if running.scheduler.finished:
            break
    assert running.scheduler.finished


def test_a_job_waiting_for_its_tenants_indexing_lets_the_others_run(continuous: Running) -> None:
    assert continuous.engine.step_permits is not None
    continuous.engine.step_permits.release(1000)
    parked, other = pending("indexing: a new tenant's first question", 1), pending(new_tokens=1)
    waits_before = waits_counted()
    continuous.scheduler.submit(parked)
    assert wait_until(lambda: continuous.scheduler.preparer.parked == 1)
    continuous.scheduler.submit(other)
    # the other tenant's job is answered while the first one's knowledge is still indexed
    assert continuous.sender.wait_for(1)
    assert continuous.engine.admissions == [[other.key]]
    assert continuous.settled(parked.message) == []
    continuous.processor.loading.set_result(None)
    assert continuous.sender.wait_for(2)
    assert continuous.engine.admissions == [[other.key], [parked.key]]
    assert wait_until(lambda: continuous.settled(parked.message) == ["ack"])
    assert continuous.scheduler.preparer.parked == 0
    assert waits_counted() == waits_before + 1  # chatq_knowledge_wait_seconds


def waits_counted() -> float:
    return REGISTRY.get_sample_value("chatq_knowledge_wait_seconds_count") or 0.0


def test_a_failed_indexing_requeues_the_jobs_that_waited_for_it(continuous: Running) -> None:
    parked = pending("indexing: a new tenant's first question", 1)
    continuous.scheduler.submit(parked)
    assert wait_until(lambda: continuous.scheduler.preparer.parked == 1)
    continuous.processor.loading.set_exception(RuntimeError("the database is down"))
    assert wait_until(lambda: continuous.settled(parked.message) == ["requeue"])
    assert continuous.engine.admissions == [] and continuous.processor.resumed == []


def test_closing_finishes_the_parked_jobs_when_their_indexing_ends(continuous: Running) -> None:
    parked = pending("indexing routed: a new tenant's first question")
    continuous.scheduler.submit(parked)
    assert wait_until(lambda: continuous.scheduler.preparer.parked == 1)
    continuous.scheduler.close()
    continuous.scheduler.join(0.5)
    assert not continuous.scheduler.finished  # it is claimed: the stop waits for it
    continuous.processor.loading.set_result(None)
    continuous.scheduler.join(WAIT_S)
    assert continuous.scheduler.finished
    assert continuous.settled(parked.message) == ["ack"]
    assert [o.response for o in continuous.sender.outcomes] == ["routed"]


def test_after_a_lost_connection_parked_jobs_are_dropped(continuous: Running) -> None:
    parked = pending("indexing: a new tenant's first question", 1)
    continuous.scheduler.submit(parked)
    assert wait_until(lambda: continuous.scheduler.preparer.parked == 1)
    assert continuous.scheduler.drop_waiting() == 1
    continuous.processor.loading.set_result(None)
    later = pending(new_tokens=1)
    assert continuous.engine.step_permits is not None
    continuous.engine.step_permits.release(10)
    continuous.scheduler.submit(later)
    assert continuous.sender.wait_for(1)
    # the dropped job is not resumed: the broker delivers it again
    assert continuous.engine.admissions == [[later.key]]
    assert continuous.processor.resumed == [] and continuous.settled(parked.message) == []
