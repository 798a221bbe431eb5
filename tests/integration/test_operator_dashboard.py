"""``GET /v1/operator/dashboard`` and ``GET /dashboard`` on a real database and broker (embedded
SQLite, and Postgres + RabbitMQ): an operator key sees every tenant's figures and no customer's
words, a tenant's admin key is refused, the query is validated, a broker that cannot be read
leaves only the queues unknown, and the page allows nothing but itself."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from services.api.app import create_app
from services.api.operator import service
from services.api.operator.protocol import DashboardWindow
from services.api.operator.service import BucketGrid, read_dashboard
from shared.api_keys import IssuedKey, create_api_key
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import DeliveryStatus, Job, JobStatus, WebhookDelivery, utcnow
from shared.messaging.topology import ALL_QUEUES
from tests.integration.factories import make_job

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
SECRET_QUERY = "My card number is 4111 1111 1111 1111, where is my order?"
SECRET_ANSWER = "Your order 77-SECRET ships tomorrow."
HOOK_URL = "https://hooks.example.com/inbox/tok_s3cr3t?sig=abc"


def bearer(key: IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.key}"}


def operator_key(settings: Settings) -> IssuedKey:
    return create_api_key(settings.database_url, "ops", scopes=["operator"])


def finished_job(
    settings: Settings,
    key: IssuedKey,
    route: str | None,
    *,
    status: JobStatus = JobStatus.COMPLETED,
    total_ms: float = 100.0,
    queue_ms: float = 10.0,
    batch_size: int = 0,
    moderation: dict[str, Any] | None = None,
    completed_at: datetime | None = None,
) -> Job:
    return make_job(
        settings.database_url,
        key.id,
        status=status,
        query=SECRET_QUERY,
        response=SECRET_ANSWER if status is JobStatus.COMPLETED else None,
        route=route,
        timings={"queue_ms": queue_ms, "total_ms": total_ms, "batch_size": batch_size},
        batch_size=batch_size,
        moderation=moderation,
        completed_at=completed_at or utcnow(),
    )


def dead_delivery(settings: Settings, job: Job, key: IssuedKey) -> str:
    delivery_id = f"msg_{uuid.uuid4().hex}"
    with session_scope(settings.database_url) as session:
        session.add(
            WebhookDelivery(
                id=delivery_id,
                job_id=job.id,
                api_key_id=key.id,
                event_type="job.completed",
                url=HOOK_URL,
                payload={},
                status=DeliveryStatus.DEAD,
                attempt_count=6,
                last_status_code=500,
                last_error=f"HTTPStatusError: POST {HOOK_URL} answered 500",
            )
        )
    return delivery_id


def dashboard(client: FlaskClient, key: IssuedKey, query: str = "") -> Any:
    return client.get(f"/v1/operator/dashboard{query}", headers=bearer(key))


def test_the_operator_sees_every_tenants_jobs_and_none_of_their_words(
    backend_settings: Settings,
) -> None:
    url = backend_settings.database_url
    shop, school = create_api_key(url, "shop"), create_api_key(url, "school")
    ops = operator_key(backend_settings)
    faq = finished_job(backend_settings, shop, "faq", total_ms=20.0)
    blocked = finished_job(
        backend_settings,
        shop,
        "moderation",
        moderation={"flagged": True, "categories": ["abuse"], "action": "block", "stage": "input"},
    )
    llm = finished_job(
        backend_settings,
        school,
        "llm",
        batch_size=3,
        moderation={"flagged": False, "categories": [], "action": "none", "stage": "output"},
    )
    failed = finished_job(backend_settings, school, None, status=JobStatus.FAILED)
    queued = make_job(url, school.id)
    delivery_id = dead_delivery(backend_settings, llm, school)

    response = dashboard(create_app(backend_settings).test_client(), ops, "?window=15m")

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    text = response.get_data(as_text=True)
    for words in (SECRET_QUERY, SECRET_ANSWER, "tok_s3cr3t", "sig=abc"):
        assert words not in text
    body = response.get_json()
    assert body["object"] == "operator.dashboard" and body["window"] == "15m"
    assert body["bucket_s"] == 60 and len(body["throughput"]) == len(body["latency"]) == 15

    recent = {job["id"]: job for job in body["recent_jobs"]}
    assert set(recent) == {str(job.id) for job in (faq, blocked, llm, failed, queued)}
    assert {recent[str(faq.id)]["tenant"], recent[str(llm.id)]["tenant"]} == {"shop", "school"}
    assert recent[str(blocked.id)]["moderation_flagged"] is True
    assert recent[str(blocked.id)]["moderation_action"] == "block"
    assert recent[str(llm.id)]["moderation_flagged"] is False
    assert recent[str(queued.id)]["moderation_flagged"] is None
    assert recent[str(queued.id)]["status"] == "queued"
    assert recent[str(faq.id)]["total_ms"] == 20.0
    created = [job["created_at"] for job in body["recent_jobs"]]
    assert created == sorted(created, reverse=True)

    assert sum(bucket["completed"] for bucket in body["throughput"]) == 3
    assert sum(bucket["failed"] for bucket in body["throughput"]) == 1
    assert body["jobs_read"] == 4 and body["jobs_capped"] is False
    assert {r["route"]: r["jobs"] for r in body["routes"]} == {"faq": 1, "moderation": 1, "llm": 1}
    assert body["batch_sizes"] == [{"batch_size": 3, "jobs": 1}]

    assert body["webhooks_dead"] == 1 and body["outbox_backlog"] == 0
    (dead,) = body["dead_webhooks"]
    assert dead["id"] == delivery_id and dead["job_id"] == str(llm.id)
    assert dead["url_host"] == "hooks.example.com"
    assert dead["last_error"] == "HTTPStatusError: POST hooks.example.com answered 500"
    assert (dead["attempts"], dead["last_status_code"]) == (6, 500)

    assert body["broker_note"] is None
    assert [queue["name"] for queue in body["queues"]] == [queue.name for queue in ALL_QUEUES]
    assert all(isinstance(queue["ready"], int) for queue in body["queues"])


def test_the_figures_fall_into_the_buckets_they_finished_in(backend_settings: Settings) -> None:
    shop = create_api_key(backend_settings.database_url, "shop")
    now = utcnow()
    grid = BucketGrid.ending_at(now, DashboardWindow.ONE_HOUR)
    earlier, latest = grid.starts()[-3] + timedelta(seconds=1), grid.starts()[-1]
    for total_ms, queue_ms in ((100.0, 10.0), (200.0, 20.0), (300.0, 30.0), (400.0, 40.0)):
        finished_job(
            backend_settings, shop, "llm", total_ms=total_ms, queue_ms=queue_ms, batch_size=4,
            completed_at=earlier,
        )  # fmt: skip
    finished_job(backend_settings, shop, "faq", total_ms=5.0, queue_ms=1.0, completed_at=latest)
    finished_job(backend_settings, shop, None, status=JobStatus.FAILED, completed_at=latest)

    figures = read_dashboard(backend_settings, DashboardWindow.ONE_HOUR, now=now)

    assert figures.window_start == grid.start and figures.bucket_s == 60
    # the last bucket is the current one: the first begins within a bucket after an hour ago
    assert now - timedelta(hours=1) < figures.window_start <= now - timedelta(minutes=59)
    assert [(b.completed, b.failed) for b in figures.throughput[-3:]] == [(4, 0), (0, 0), (1, 1)]
    assert sum(b.completed + b.failed for b in figures.throughput[:-3]) == 0
    busy, idle, current = figures.latency[-3:]
    # linear interpolation between the closest ranks: p50 of 100..400 is 250, p95 is 385
    assert (busy.jobs, busy.total_ms_p50, busy.total_ms_p95) == (4, 250.0, 385.0)
    assert (busy.queue_ms_p50, busy.queue_ms_p95) == (25.0, 38.5)
    assert (idle.jobs, idle.total_ms_p50, idle.queue_ms_p95) == (0, None, None)
    assert (current.jobs, current.total_ms_p50, current.total_ms_p95) == (1, 5.0, 5.0)
    assert [(c.batch_size, c.jobs) for c in figures.batch_sizes] == [(4, 4)]
    assert [(r.route, r.jobs) for r in figures.routes] == [("llm", 4), ("faq", 1)]


def test_a_window_holding_more_jobs_than_are_read_says_so(
    backend_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "MAX_JOBS_PER_STATUS", 2)
    shop = create_api_key(backend_settings.database_url, "shop")
    for _ in range(3):
        finished_job(backend_settings, shop, "faq")

    figures = read_dashboard(backend_settings, DashboardWindow.FIFTEEN_MINUTES)

    assert figures.jobs_capped is True and figures.jobs_read == 2
    assert sum(bucket.completed for bucket in figures.throughput) == 2


def test_a_tenants_admin_key_is_refused_naming_the_operator_scope(
    backend_settings: Settings,
) -> None:
    client = create_app(backend_settings).test_client()
    admin = create_api_key(backend_settings.database_url, "shop")  # every scope of a tenant
    for key in (admin, create_api_key(backend_settings.database_url, "ro", scopes=["jobs:read"])):
        response = dashboard(client, key)
        assert response.status_code == 403 and response.mimetype == PROBLEM
        problem = response.get_json()
        assert problem["type"] == "urn:chatq:problem:insufficient-scope"
        assert problem["required_scope"] == "operator"
    unknown = client.get("/v1/operator/dashboard", headers={"Authorization": "Bearer cq_nope"})
    assert unknown.status_code == 401 and unknown.mimetype == PROBLEM


@pytest.mark.parametrize(
    "query", ["?window=2h", "?window=", "?window=1h&window=6h", "?tenant=shop"]
)
def test_the_query_is_validated_as_problem_details(backend_settings: Settings, query: str) -> None:
    response = dashboard(
        create_app(backend_settings).test_client(), operator_key(backend_settings), query
    )
    assert response.status_code == 422 and response.mimetype == PROBLEM
    problem = response.get_json()
    assert problem["type"] == "urn:chatq:problem:validation-error"
    assert problem["errors"][0]["loc"] in ("window", "tenant")


def test_every_window_answers_with_its_buckets(backend_settings: Settings) -> None:
    client = create_app(backend_settings).test_client()
    ops = operator_key(backend_settings)
    for window, buckets, bucket_s in (("15m", 15, 60), ("1h", 60, 60), ("6h", 72, 300),
                                      ("24h", 96, 900)):  # fmt: skip
        body = dashboard(client, ops, f"?window={window}").get_json()
        assert (len(body["throughput"]), body["bucket_s"]) == (buckets, bucket_s), window
    assert dashboard(client, ops).get_json()["window"] == "1h"  # the default


def test_a_broker_that_cannot_be_read_leaves_only_the_queues_unknown(
    backend_settings: Settings,
) -> None:
    shop = create_api_key(backend_settings.database_url, "shop")
    finished_job(backend_settings, shop, "faq")
    # nothing listens on port 1: the broker is away, the database is not
    away = backend_settings.model_copy(update={"broker_url": "amqp://guest:guest@127.0.0.1:1//"})
    response = dashboard(create_app(away).test_client(), operator_key(backend_settings))

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert all(q["ready"] is None and q["consumers"] is None for q in body["queues"])
    assert "could not be read" in body["broker_note"]
    assert "guest:guest" not in body["broker_note"]
    assert body["routes"] == [{"route": "faq", "jobs": 1}]


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def test_the_page_is_public_holds_no_data_and_allows_only_itself(
    backend_settings: Settings,
) -> None:
    shop = create_api_key(backend_settings.database_url, "shop")
    job = finished_job(backend_settings, shop, "faq")
    response = create_app(backend_settings).test_client().get("/dashboard")  # no key

    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert str(job.id) not in page and "shop" not in page
    assert 'type="password"' in page
    assert re.search(r"""(?:src|href)=["']?(?!data:)[a-z]+:""", page) is None  # nothing external
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["Content-Security-Policy"].split(";")
    )
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == _csp_hash(script)
    assert policy["style-src"] == _csp_hash(style)
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in json.dumps(policy)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
