"""Metrics that each process observes, and the scrape-time gauges."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from services.postprocess.job_metrics import FinishedJob, observe_finished
from shared.messaging.schemas import Usage
from shared.metrics import SystemGauges, exposition, observe_moderation
from shared.system_state import QueueState, SystemState


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_finished_job_counts_by_status_and_route_with_its_latencies() -> None:
    before = value("chatq_jobs_finished_total", status="completed", route="llm")
    before_rate = value("chatq_job_tokens_per_second_count")
    before_sum = value("chatq_job_tokens_per_second_sum")
    observe_finished(
        FinishedJob(
            "completed",
            "llm",
            {"queue_ms": 20.0, "inference_ms": 500.0, "batch_size": 4, "total_ms": 600.0},
            Usage(prompt_tokens=30, completion_tokens=50, total_tokens=80),
            handoff=False,
        )
    )
    assert value("chatq_jobs_finished_total", status="completed", route="llm") == before + 1
    assert value("chatq_job_tokens_per_second_count") == before_rate + 1
    assert value("chatq_job_tokens_per_second_sum") - before_sum == 100.0  # 50 tokens in 0.5 s


def test_a_routed_answer_is_not_counted_as_generation() -> None:
    before = value("chatq_job_inference_seconds_count")
    observe_finished(
        FinishedJob(
            "completed",
            "faq",
            {"queue_ms": 5.0, "inference_ms": 0.0, "batch_size": 0, "total_ms": 30.0},
            None,
            handoff=True,
        )
    )
    assert value("chatq_job_inference_seconds_count") == before
    assert value("chatq_job_total_seconds_count", route="faq") >= 1


def test_a_moderation_finding_counts_once_per_category() -> None:
    before = value("chatq_moderation_hits_total", stage="input", action="block", category="abuse")
    observe_moderation("input", "block", ["abuse", "profanity"])
    after = value("chatq_moderation_hits_total", stage="input", action="block", category="abuse")
    assert after == before + 1
    assert value("chatq_moderation_hits_total", stage="input", action="block", category="profanity")


def test_system_gauges_are_read_at_scrape_time() -> None:
    state = SystemState({"chat.inference": QueueState(7, 1)}, outbox_backlog=3, webhooks_dead=1)
    text, content_type = exposition(SystemGauges(lambda: state))
    assert content_type.startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }
    assert samples[("chatq_queue_depth", (("queue", "chat.inference"),))] == 7
    assert samples[("chatq_outbox_backlog", ())] == 3
    assert samples[("chatq_webhooks_dead", ())] == 1


def test_a_scrape_still_answers_when_the_broker_is_away() -> None:
    def unreachable() -> SystemState:
        raise ConnectionError("broker down")

    text, _ = exposition(SystemGauges(unreachable))
    assert b"chatq_jobs_submitted_total" in text  # the process's own metrics are all there
    assert b"chatq_queue_depth" not in text
