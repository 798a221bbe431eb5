"""Celery retries the post-processing tasks (run eagerly here; storing is faked): a database
that is away is waited for however long, another error a few times, then the job fails."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from services.postprocess import tasks
from tests.integration.factories import completed_outcome


def database_away() -> OperationalError:
    return OperationalError("UPDATE jobs", None, ConnectionRefusedError("restarting"))


class Flaky:
    """Raises the given errors one per call, then returns ``result``."""

    def __init__(self, errors: list[Exception], result: Any = None) -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    def __call__(self, *_args: Any) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> list[str]:
        self.calls.append(args)
        return []


@pytest.fixture
def failures(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(tasks, "record_failure", recorder)
    return recorder


@pytest.fixture
def countdowns(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delay Celery chose for each retry of ``finalize_job``, in order."""
    seen: list[float] = []
    retry = tasks.finalize_job.retry

    def recording_retry(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["countdown"])
        return retry(*args, **kwargs)

    monkeypatch.setattr(tasks.finalize_job, "retry", recording_retry)
    return seen


def outcome() -> dict[str, Any]:
    return completed_outcome(uuid.uuid4()).model_dump(mode="json")


def test_a_database_that_is_away_is_waited_for_however_long(
    monkeypatch: pytest.MonkeyPatch, failures: Recorder, countdowns: list[float]
) -> None:
    away_for = tasks.MAX_FINALIZE_RETRIES * 3
    store = Flaky([database_away() for _ in range(away_for)], result=[])
    monkeypatch.setattr(tasks, "record_outcome", store)
    result = tasks.finalize_job.apply(args=[outcome()])
    assert result.successful()
    assert store.calls == away_for + 1
    assert failures.calls == []
    # exponential backoff with full jitter, capped
    assert len(countdowns) == away_for
    for retries, countdown in enumerate(countdowns):
        assert 0 <= countdown <= min(tasks.RETRY_BACKOFF_MAX_S, 2**retries)


def test_another_error_is_retried_a_few_times_then_the_job_fails(
    monkeypatch: pytest.MonkeyPatch, failures: Recorder
) -> None:
    store = Flaky([ValueError("no such route") for _ in range(100)])
    monkeypatch.setattr(tasks, "record_outcome", store)
    sent = outcome()
    result = tasks.finalize_job.apply(args=[sent])
    assert result.successful()
    assert store.calls == tasks.MAX_FINALIZE_RETRIES + 1
    [(_settings, job_id, code, message)] = failures.calls
    assert (job_id, code) == (uuid.UUID(sent["job_id"]), "postprocess_error")
    assert "no such route" in message


def test_an_error_that_passes_is_retried_until_stored(
    monkeypatch: pytest.MonkeyPatch, failures: Recorder
) -> None:
    store = Flaky([ValueError("once"), database_away(), ValueError("twice")], result=[])
    monkeypatch.setattr(tasks, "record_outcome", store)
    assert tasks.finalize_job.apply(args=[outcome()]).successful()
    assert store.calls == 4
    assert failures.calls == []


def test_a_poison_outcome_is_dropped_without_retrying(
    monkeypatch: pytest.MonkeyPatch, failures: Recorder
) -> None:
    store = Flaky([], result=[])
    monkeypatch.setattr(tasks, "record_outcome", store)
    assert tasks.finalize_job.apply(args=[{"job_id": "not-a-uuid"}]).successful()
    assert store.calls == 0
    assert failures.calls == []


def test_a_delivery_is_retried_while_the_database_is_away_and_only_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempt = Flaky([database_away() for _ in range(10)])
    monkeypatch.setattr(tasks, "attempt_delivery", attempt)
    monkeypatch.setattr(tasks, "webhook_client", lambda: None)
    assert tasks.deliver_webhook.apply(args=["msg_1"]).successful()
    assert attempt.calls == 11

    broken = Flaky([RuntimeError("a bug")])
    monkeypatch.setattr(tasks, "attempt_delivery", broken)
    assert tasks.deliver_webhook.apply(args=["msg_2"]).failed()
    assert broken.calls == 1
