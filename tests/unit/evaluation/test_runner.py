"""The runner's protocol handling, against a fake API over real HTTP: submission, long-poll,
sessions and earlier turns, retries after 429, failures scored incorrect, a refused key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from chatq.evaluation.questions import QuestionSet
from chatq.evaluation.runner import EvalRunError, retry_after_s, run_questions
from tests.unit.evaluation.conftest import API_KEY, FakeChatq


def make_set(*questions: dict[str, Any]) -> QuestionSet:
    return QuestionSet.model_validate({"name": "shop", "questions": list(questions)})


def item(id: str, question: str, kind: str = "faq", **extra: Any) -> dict[str, Any]:
    return {
        "id": id,
        "kind": kind,
        "lang": "en",
        "question": question,
        "expect": {"all": [["7 days"]]},
        **extra,
    }


def no_sleep(_seconds: float) -> None:
    pass


def test_every_item_is_answered_scored_and_returned_in_order(fake_chatq: FakeChatq) -> None:
    fake_chatq.answers = {
        "refund?": {
            "response": "Within 7 days.",
            "route": "faq",
            "sources": [{"kind": "faq", "id": "refund", "title": "Refunds", "score": 0.91}],
        },
        "order 20261234?": {
            "response": "Order 20261234 arrives in 7 days.",
            "route": "rule",
            "intent": {"name": "order_status", "confidence": 1.0, "slots": {"order_id": "1"}},
        },
        "human please": {"response": "Connecting you.", "route": "rule", "handoff": True},
    }
    questions = make_set(
        item("a", "refund?"), item("b", "order 20261234?", "rule"), item("c", "human please")
    )

    results = run_questions(fake_chatq.url, API_KEY, questions, concurrency=2, sleep=no_sleep)

    assert [r.question.id for r in results] == ["a", "b", "c"]
    assert [r.correct for r in results] == [True, True, False]
    assert [r.route for r in results] == ["faq", "rule", "rule"]
    assert results[0].sources[0]["id"] == "refund"
    assert results[1].intent == {
        "name": "order_status",
        "confidence": 1.0,
        "slots": {"order_id": "1"},
    }
    assert results[2].handoff
    assert results[2].score.missing == [["7 days"]]
    assert all(r.status == "completed" and r.latency_ms is not None for r in results)
    job_of = {j.query: j.id for j in fake_chatq.jobs}
    assert [r.job_ids for r in results] == [[job_of[r.question.question]] for r in results]
    assert all(j.polls == 1 for j in fake_chatq.jobs)  # it long-polled until the job was done


def test_each_item_gets_its_own_fresh_session(fake_chatq: FakeChatq) -> None:
    questions = make_set(item("a", "one?"), item("b", "two?"))

    run_questions(fake_chatq.url, API_KEY, questions, sleep=no_sleep)
    run_questions(fake_chatq.url, API_KEY, questions, sleep=no_sleep)

    sessions = [j.session_id for j in fake_chatq.jobs]
    assert all(sessions)
    assert len(set(sessions)) == 4


def test_earlier_turns_are_asked_first_in_order_each_finished_before_the_next(
    fake_chatq: FakeChatq,
) -> None:
    fake_chatq.polls_before_done = 2
    fake_chatq.answers = {"and the refund?": {"response": "7 days for the kettle.", "route": "llm"}}
    questions = make_set(
        item(
            "mt-1",
            "and the refund?",
            "multiturn",
            turns=["I bought a kettle.", "It is blue."],
        )
    )

    (result,) = run_questions(fake_chatq.url, API_KEY, questions, sleep=no_sleep)

    session_id = fake_chatq.jobs[0].session_id
    asked = fake_chatq.submissions(session_id)
    assert [j.query for j in asked] == ["I bought a kettle.", "It is blue.", "and the refund?"]
    assert not any(j.session_busy_at_submit for j in asked)
    assert result.correct
    assert result.job_ids == [j.id for j in asked]
    assert result.turn_answers == ["I do not know.", "I do not know."]


def test_generation_parameters_are_sent_with_every_job(fake_chatq: FakeChatq) -> None:
    questions = make_set(item("mt-1", "q?", "multiturn", turns=["hello"]))

    run_questions(fake_chatq.url, API_KEY, questions, max_new_tokens=64, sleep=no_sleep)

    assert [j.params for j in fake_chatq.jobs] == [{"max_new_tokens": 64, "temperature": 0.0}] * 2


def test_a_429_is_retried_after_its_retry_after(fake_chatq: FakeChatq) -> None:
    fake_chatq.throttle_submits = 1
    fake_chatq.retry_after = "1"
    fake_chatq.answers = {"refund?": {"response": "7 days", "route": "faq"}}
    slept: list[float] = []

    (result,) = run_questions(
        fake_chatq.url, API_KEY, make_set(item("a", "refund?")), sleep=slept.append
    )

    assert slept == [1.0]
    assert fake_chatq.throttled == 1
    assert len(fake_chatq.jobs) == 1
    assert result.correct


def test_retries_are_bounded_and_then_the_item_fails(fake_chatq: FakeChatq) -> None:
    fake_chatq.throttle_submits = 100
    slept: list[float] = []

    (result,) = run_questions(
        fake_chatq.url, API_KEY, make_set(item("a", "refund?")), sleep=slept.append
    )

    assert len(slept) == 6
    assert not result.correct
    assert result.status == "error"
    assert result.error is not None and "429 Too many requests" in result.error


def test_a_failed_job_is_scored_incorrect_with_its_error_shown(fake_chatq: FakeChatq) -> None:
    fake_chatq.answers = {
        "boom?": {"status": "failed", "error": {"code": "engine_error", "message": "out of memory"}}
    }

    (result,) = run_questions(fake_chatq.url, API_KEY, make_set(item("a", "boom?")), sleep=no_sleep)

    assert not result.correct
    assert result.status == "failed"
    assert result.answer is None
    assert result.error == "failed: engine_error: out of memory"


def test_a_failed_earlier_turn_is_reported_and_the_question_is_not_asked(
    fake_chatq: FakeChatq,
) -> None:
    fake_chatq.answers = {"hi": {"status": "expired", "error": {"code": "deadline_exceeded"}}}
    questions = make_set(item("mt-1", "and then?", "multiturn", turns=["hi"]))

    (result,) = run_questions(fake_chatq.url, API_KEY, questions, sleep=no_sleep)

    assert [j.query for j in fake_chatq.jobs] == ["hi"]
    assert not result.correct
    assert result.status == "expired"
    assert result.error == "turn 1 expired: deadline_exceeded"


def test_a_job_that_does_not_finish_in_time_is_a_timeout(fake_chatq: FakeChatq) -> None:
    fake_chatq.polls_before_done = 10**9

    (result,) = run_questions(
        fake_chatq.url, API_KEY, make_set(item("a", "slow?")), timeout_s=0.3, sleep=no_sleep
    )

    assert result.status == "timeout"
    assert not result.correct
    assert result.error == "no answer within 0.3 s"


def test_a_rejected_key_stops_the_run(fake_chatq: FakeChatq) -> None:
    with pytest.raises(EvalRunError, match="401 Missing or invalid API key"):
        run_questions(fake_chatq.url, "cq_wrong", make_set(item("a", "q?")), sleep=no_sleep)

    assert fake_chatq.jobs == []


def test_an_unreachable_api_stops_the_run_after_bounded_retries() -> None:
    from chatq.demo import free_port

    slept: list[float] = []
    with pytest.raises(EvalRunError, match="cannot reach"):
        run_questions(
            f"http://127.0.0.1:{free_port()}",
            API_KEY,
            make_set(item("a", "q?")),
            sleep=slept.append,
        )
    assert len(slept) == 6


def test_retry_after_reads_seconds_dates_and_falls_back_to_backoff() -> None:
    def response(**headers: str) -> httpx.Response:
        return httpx.Response(429, headers=headers)

    assert retry_after_s(response(**{"Retry-After": "2"}), attempt=0) == 2.0
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    assert 15 <= retry_after_s(response(**{"Retry-After": when}), attempt=0) <= 20
    assert retry_after_s(response(), attempt=0) == 0.5
    assert retry_after_s(response(), attempt=2) == 2.0
    assert retry_after_s(response(**{"Retry-After": "9999"}), attempt=0) == 60.0


def test_a_failing_health_check_stops_the_run_instead_of_waiting_out_every_job(
    fake_chatq: FakeChatq,
) -> None:
    fake_chatq.polls_before_done = 10**9
    polls = 0

    def worker_died() -> None:
        nonlocal polls
        polls += 1
        if polls > 3:
            raise RuntimeError("worker-0 exited with status 1; its log is above")

    with pytest.raises(RuntimeError, match="worker-0 exited"):
        run_questions(
            fake_chatq.url,
            API_KEY,
            make_set(item("a", "q?"), item("b", "r?")),
            concurrency=1,
            sleep=no_sleep,
            health_check=worker_died,
        )


def test_a_warm_up_question_is_asked_first_and_not_scored(fake_chatq: FakeChatq) -> None:
    fake_chatq.answers = {"refund?": {"response": "7 days", "route": "faq"}}

    results = run_questions(
        fake_chatq.url, API_KEY, make_set(item("a", "refund?")), warm_up=True, sleep=no_sleep
    )

    assert [j.query for j in fake_chatq.jobs] == ["Hello", "refund?"]
    assert fake_chatq.jobs[0].status == "completed"  # waited for before the first question
    assert fake_chatq.jobs[0].session_id != fake_chatq.jobs[1].session_id
    assert [r.question.id for r in results] == ["a"]
    assert results[0].job_ids == [fake_chatq.jobs[1].id]
