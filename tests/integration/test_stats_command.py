"""``chatq stats`` over a real database (embedded SQLite, and Postgres): jobs with known routes,
timings, intents, moderation and webhook attempts give exactly the counts and percentiles they
should, as a function call and as the installed command; bad input and an unreachable database
give a short message and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from chatq.cli import main
from chatq.stats_command import read_stats
from shared.api_keys import IssuedKey, create_api_key
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import (
    DeliveryStatus,
    Job,
    JobStatus,
    WebhookAttempt,
    WebhookDelivery,
    utcnow,
)
from tests.integration.factories import make_job

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CHATQ = Path(sys.executable).with_name("chatq")  # the installed console script (.venv/bin)
CLEAN = {"flagged": False, "categories": [], "action": None, "stage": "output"}


def timings(total_ms: float, queue_ms: float = 1.0, inference_ms: float = 0.0) -> dict[str, Any]:
    batch_size = 2 if inference_ms else 0  # 0: the model did not run (routed answers)
    return {
        "queue_ms": queue_ms,
        "inference_ms": inference_ms,
        "batch_size": batch_size,
        "route_ms": 0.5,
        "total_ms": total_ms,
    }


def completed(url: str, key: IssuedKey, route: str, total_ms: float, **fields: Any) -> Job:
    fields.setdefault("timings", timings(total_ms))
    fields.setdefault("moderation", CLEAN)
    return make_job(url, key.id, status=JobStatus.COMPLETED, route=route, **fields)


def deliver(url: str, key: IssuedKey, job: Job, status: DeliveryStatus, *codes: int | str) -> None:
    """A delivery of ``job`` with one attempt per code (a string is a transport error)."""
    with session_scope(url) as session:
        delivery = WebhookDelivery(
            id=f"msg_{uuid.uuid4().hex}",
            job_id=job.id,
            api_key_id=key.id,
            event_type="job.completed",
            url="https://hooks.example.com/chatq",
            payload={},
            status=status,
            attempt_count=len(codes),
        )
        session.add(delivery)
        session.flush()
        for number, code in enumerate(codes, start=1):
            session.add(
                WebhookAttempt(
                    delivery_id=delivery.id,
                    attempt_number=number,
                    duration_ms=12.0,
                    status_code=code if isinstance(code, int) else None,
                    error=code if isinstance(code, str) else None,
                )
            )


def created_days_ago(url: str, job: Job, days: int) -> None:
    with session_scope(url) as session:
        when = utcnow() - timedelta(days=days)
        session.execute(update(Job).where(Job.id == job.id).values(created_at=when))


@pytest.fixture
def shop_and_school(backend_settings: Settings) -> Settings:
    """Twelve jobs of the shop and two of the school in the last day, one shop job of last
    week, and their webhook deliveries."""
    url = backend_settings.database_url
    shop = create_api_key(url, "shop")
    school = create_api_key(url, "school")

    def llm(key: IssuedKey, total: float, queue: float, inference: float, **fields: Any) -> Job:
        return completed(url, key, "llm", total, timings=timings(total, queue, inference), **fields)

    first = llm(shop, 100, 10, 50)
    second = llm(shop, 200, 20, 60)
    llm(shop, 300, 30, 70)
    masked = {"flagged": True, "categories": ["politics"], "action": "mask", "stage": "output"}
    llm(shop, 400, 40, 80, moderation=masked)
    completed(url, shop, "faq", 5)
    completed(url, shop, "faq", 15)
    order = {"name": "order_status", "confidence": 0.9, "slots": {}}
    rule = completed(url, shop, "rule", 7, intent=order)
    completed(url, shop, "rule", 8, intent=order)
    refund = {"name": "refund", "confidence": 0.8, "slots": {"order": "A1"}}
    completed(url, shop, "rule", 9, intent=refund, handoff=True)
    blocked = {
        "flagged": True,
        "categories": ["abuse", "profanity"],
        "action": "block",
        "stage": "input",
    }
    completed(url, shop, "moderation", 3, moderation=blocked)
    make_job(url, shop.id, status=JobStatus.FAILED, error={"code": "x", "message": "y"})
    make_job(url, shop.id, status=JobStatus.QUEUED)

    llm(school, 1000, 100, 500)
    school_job = llm(school, 2000, 100, 500)

    old = llm(shop, 99_999, 9_999, 9_999, intent=refund)
    created_days_ago(url, old, 8)

    deliver(url, shop, first, DeliveryStatus.DELIVERED, 302, 200)
    deliver(url, shop, second, DeliveryStatus.DEAD, "timed out", 410)
    deliver(url, shop, rule, DeliveryStatus.PENDING, 503)
    deliver(url, school, school_job, DeliveryStatus.DELIVERED, 204)
    deliver(url, shop, old, DeliveryStatus.DELIVERED, 500)
    return backend_settings


def figures(p50: float, p95: float, p99: float, count: int) -> dict[str, Any]:
    return {"count": count, "p50": p50, "p95": p95, "p99": p99}


def test_one_tenants_day_adds_up_to_the_known_figures(shop_and_school: Settings) -> None:
    stats = read_stats(shop_and_school.database_url, "24h", "shop").as_json()

    assert stats["tenant"] == "shop"
    assert stats["window"]["since"] == "24h"
    jobs = stats["jobs"]
    assert jobs["total"] == 12
    assert jobs["by_status"] == {
        "completed": {"count": 10, "share": 0.8333},
        "failed": {"count": 1, "share": 0.0833},
        "queued": {"count": 1, "share": 0.0833},
        "cancelled": {"count": 0, "share": 0.0},
        "expired": {"count": 0, "share": 0.0},
        "in_progress": {"count": 0, "share": 0.0},
    }
    assert list(jobs["by_route"].items()) == [
        ("llm", {"count": 4, "share": 0.3333}),
        ("rule", {"count": 3, "share": 0.25}),
        ("faq", {"count": 2, "share": 0.1667}),
        ("none", {"count": 2, "share": 0.1667}),
        ("moderation", {"count": 1, "share": 0.0833}),
    ]

    # linear interpolation between ranks, as Postgres' percentile_cont:
    # [3 5 7 8 9 15 100 200 300 400] → p50 at rank 4.5, p95 at 8.55, p99 at 8.91
    latency = stats["latency_ms"]
    assert latency["total_ms"]["all"] == figures(12.0, 355.0, 391.0, count=10)
    assert latency["total_ms"]["by_route"] == {
        "faq": figures(10.0, 14.5, 14.9, count=2),
        "llm": figures(250.0, 385.0, 397.0, count=4),
        "moderation": figures(3.0, 3.0, 3.0, count=1),
        "rule": figures(8.0, 8.9, 8.98, count=3),
    }
    assert latency["model_answered"] == 4
    assert latency["queue_ms"] == figures(25.0, 38.5, 39.7, count=4)
    assert latency["inference_ms"] == figures(65.0, 78.5, 79.7, count=4)

    assert stats["intents"] == [
        {"name": "order_status", "count": 2},
        {"name": "refund", "count": 1},
    ]
    assert stats["moderation"] == {
        "flagged": 2,
        "by_stage": {"input": 1, "output": 1},
        "by_action": {"block": 1, "mask": 1},
        "by_category": {"abuse": 1, "politics": 1, "profanity": 1},
    }
    assert stats["handoffs"] == {"count": 1, "share": 0.0833}
    # 302, a transport error, 410 and 503 failed; one 200 came through
    assert stats["webhooks"] == {
        "deliveries": {"total": 3, "by_status": {"pending": 1, "delivered": 1, "dead": 1}},
        "attempts": {"total": 5, "failed": 4, "failure_rate": 0.8},
    }


def test_the_window_decides_which_jobs_count(shop_and_school: Settings) -> None:
    url = shop_and_school.database_url
    week = read_stats(url, "7d", "shop").as_json()
    month = read_stats(url, "30d", "shop").as_json()
    minute = read_stats(url, "1m", None).as_json()
    assert week["jobs"]["total"] == 12
    assert month["jobs"]["total"] == 13
    assert month["latency_ms"]["total_ms"]["by_route"]["llm"]["count"] == 5
    assert month["intents"] == [  # a tie goes by name
        {"name": "order_status", "count": 2},
        {"name": "refund", "count": 2},
    ]
    assert month["webhooks"]["attempts"] == {"total": 6, "failed": 5, "failure_rate": 0.8333}
    assert minute["jobs"]["total"] == 14  # the jobs were made moments ago


def chatq(settings: Settings, *args: str, database_url: str | None = None) -> Any:
    env = {
        **os.environ,
        "CHATQ_DATABASE_URL": settings.database_url if database_url is None else database_url,
        "CHATQ_DATA_DIR": str(settings.data_dir),
    }
    return subprocess.run(
        [str(CHATQ), *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60
    )


def test_the_installed_command_prints_every_tenant_as_json(shop_and_school: Settings) -> None:
    run = chatq(shop_and_school, "stats", "--json")
    assert run.returncode == 0, run.stderr
    stats = json.loads(run.stdout)
    assert stats["tenant"] is None
    assert stats["jobs"]["total"] == 14
    # the shop's [100 200 300 400] and the school's [1000 2000]
    assert stats["latency_ms"]["total_ms"]["by_route"]["llm"] == figures(
        350.0, 1750.0, 1950.0, count=6
    )
    assert stats["latency_ms"]["queue_ms"] == figures(35.0, 100.0, 100.0, count=6)
    assert stats["webhooks"]["deliveries"]["by_status"] == {
        "pending": 1,
        "delivered": 2,
        "dead": 1,
    }
    assert stats["webhooks"]["attempts"] == {"total": 6, "failed": 4, "failure_rate": 0.6667}


def test_the_text_report_names_every_section(shop_and_school: Settings) -> None:
    run = chatq(shop_and_school, "stats", "--tenant", "shop", "--since", "24h")
    assert run.returncode == 0, run.stderr
    report = run.stdout
    assert "tenant 'shop': 12" in report
    assert "llm" in report and "order_status" in report
    assert "moderation: 2 flagged job(s)" in report
    assert "handoffs: 1" in report
    assert "attempts: 5, failed (non-2xx or error): 4 (80.0%)" in report


@pytest.mark.parametrize("since", ["5x", "24", "h", "-3h", "0m", "1.5h", "99999999999d"])
def test_a_bad_since_is_one_line_and_exit_2(
    command_env: Settings, since: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", f"--since={since}"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("chatq stats: bad --since")


def test_an_unknown_tenant_is_one_line_and_exit_2(
    command_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "--tenant", "nobody"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "chatq stats: no tenant named 'nobody'\n"


@pytest.mark.parametrize(
    "database_url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:1/chatq",  # nothing listens on port 1
        "sqlite:///{tmp}/missing/chatq.db",
    ],
    ids=["postgres-down", "sqlite-missing"],
)
def test_an_unreachable_database_is_a_short_message(tmp_path: Path, database_url: str) -> None:
    settings = Settings(data_dir=tmp_path)
    run = chatq(settings, "stats", database_url=database_url.format(tmp=tmp_path))
    assert run.returncode == 1
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    assert 1 <= len(run.stderr.strip().splitlines()) <= 2
    assert run.stderr.startswith("chatq stats: ")
    assert not (tmp_path / "missing").exists()  # nothing was created on the way
