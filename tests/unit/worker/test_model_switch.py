"""Switching model versions: the switcher loads a newly activated version off the engine
thread; the engine thread finishes the running batch on the old engine, admits nothing
meanwhile, then takes the new one. No job is dropped, and each names the engine that ran it."""

from __future__ import annotations

from pathlib import Path

from services.worker.engine import Engine
from services.worker.model_switch import ModelSwitcher, ServedModel
from services.worker.scheduler import EngineScheduler
from services.worker.settlements import SettlementQueue, Settler
from shared.config import BatchingMode, Settings
from shared.db.models import utcnow
from tests.unit.worker.fakes import (
    WAIT_S,
    FakeEngine,
    FakeProcessor,
    FakeSender,
    pending,
    wait_until,
)

V1 = ServedModel("v1", Path("/models/v1"), "v1")
V2 = ServedModel("v2", Path("/models/v2"), "v2", utcnow())


class Loads:
    def __init__(self, *, failing: bool = False) -> None:
        self.loaded: list[str] = []
        self.failing = failing

    def __call__(self, model: ServedModel) -> Engine:
        self.loaded.append(model.label)
        if self.failing:
            raise FileNotFoundError(f"{model.model_dir} is gone")
        return FakeEngine(model=model.label)


def switcher(wanted: list[ServedModel], loads: Loads) -> ModelSwitcher:
    return ModelSwitcher(Settings(), V1, loads, interval_s=3600, wanted=lambda: wanted[0])


def test_a_new_version_is_loaded_once_and_handed_over_once() -> None:
    wanted, loads = [V1], Loads()
    switch = switcher(wanted, loads)
    assert switch.run_once() == 0 and not switch.pending  # serving what is wanted
    wanted[0] = V2
    assert switch.run_once() == 1 and switch.pending
    assert switch.run_once() == 0  # loaded already, waiting to be taken
    engine = switch.take()
    assert engine is not None and engine.info.model == "v2"
    assert switch.take() is None and switch.serving == V2
    assert switch.run_once() == 0
    assert loads.loaded == ["v2"]


def test_a_loaded_version_activated_away_before_it_was_taken_is_dropped() -> None:
    wanted, loads = [V2], Loads()
    switch = switcher(wanted, loads)
    assert switch.run_once() == 1 and switch.pending
    wanted[0] = V1  # the operator went back before the engine thread took v2
    assert switch.run_once() == 0
    assert not switch.pending and switch.take() is None and switch.serving == V1


def test_a_version_that_cannot_load_is_tried_again_only_once_activated_again() -> None:
    wanted, loads = [V2], Loads(failing=True)
    switch = switcher(wanted, loads)
    assert switch.run_once() == 0 and not switch.pending
    assert switch.run_once() == 0
    assert loads.loaded == ["v2"]  # not retried on every look
    wanted[0] = ServedModel("v2", V2.model_dir, "v2", utcnow())  # activated again
    switch.run_once()
    assert loads.loaded == ["v2", "v2"]
    assert switch.serving == V1


def test_the_running_batch_finishes_on_the_old_engine_and_later_jobs_run_on_the_new() -> None:
    old = FakeEngine(gated_steps=True, model="v1")
    processor = FakeProcessor(old)
    sender = FakeSender()
    wanted, loads = [V1], Loads()
    switch = switcher(wanted, loads)
    scheduler = EngineScheduler(
        Settings(max_batch_size=8, max_wait_ms=60_000, batching=BatchingMode.CONTINUOUS),
        processor,
        Settler(sender, SettlementQueue()),
        retry_pause_s=0,
        switch=switch,
    )
    scheduler.start()
    try:
        first = pending(new_tokens=3)
        scheduler.submit(first)
        assert old.admitted.acquire(timeout=WAIT_S)  # decoding, its steps held
        wanted[0] = V2
        assert switch.run_once() == 1  # loaded while the old engine is busy
        second = pending(new_tokens=1)
        scheduler.submit(second)
        assert wait_until(lambda: len(scheduler.ready) == 1)  # prepared, not admitted
        assert old.admissions == [[first.key]]
        assert old.step_permits is not None
        old.step_permits.release(10)
        assert sender.wait_for(2)
    finally:
        scheduler.close()
        scheduler.join(WAIT_S)
    assert scheduler.finished
    by_job = {o.job_id: o.engine.model for o in sender.outcomes if o.engine is not None}
    assert by_job == {first.request.job_id: "v1", second.request.job_id: "v2"}
    assert old.admissions == [[first.key]]
    assert isinstance(processor.engine, FakeEngine) and processor.engine.admissions == [
        [second.key]
    ]
