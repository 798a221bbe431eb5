"""Batches through the API in-process (Flask's test client), on SQLite and on Postgres +
RabbitMQ: stored whole or refused whole, limits, tenant isolation, counts, results in order,
the feeder's pace, cancel, and the end of a batch exactly once with its webhook."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from chatq.webhook_receiver import WebhookReceiver
from services.api.app import create_app
from services.api.batches import results as batch_results
from services.api.batches.feeder import IDLE_ROUND_S, BatchFeeder
from services.api.context import EXTENSION_KEY
from services.postprocess.results import record_outcome
from services.postprocess.webhooks import attempt_delivery
from shared.api_keys import IssuedKey, create_api_key
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import (
    Batch,
    ChatSession,
    DeliveryStatus,
    Job,
    JobStatus,
    OutboxMessage,
    WebhookDelivery,
    utcnow,
)
from shared.messaging.broker import broker_connection
from shared.messaging.topology import INFERENCE_QUEUE, queue_depth
from shared.webhook_client import WebhookClient
from tests.integration.factories import completed_outcome

pytestmark = pytest.mark.integration

JSONL = {"Content-Type": "application/jsonl"}
HOOK = "http://127.0.0.1:9/hooks"  # never called in these tests but the last one


class BatchApi:
    """The API as a tenant's keys see it, with the settings a test wants."""

    def __init__(self, settings: Settings) -> None:
        url = settings.database_url
        self.settings = settings
        self.key = create_api_key(url, "shop")
        self.colleague = create_api_key(url, "shop-2", tenant="shop")
        self.stranger = create_api_key(url, "school")
        self.app: Flask = create_app(settings)
        self.client: FlaskClient = self.app.test_client()

    def auth(self, key: IssuedKey | None = None, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {(key or self.key).key}", **headers}

    def submit_lines(self, lines: list[Any], key: IssuedKey | None = None, **query: str) -> Any:
        body = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
        return self.client.post(
            "/v1/batches", data=body, query_string=query, headers=self.auth(key, **JSONL)
        )

    def get(self, path: str, key: IssuedKey | None = None) -> Any:
        return self.client.get(path, headers=self.auth(key))

    def post(self, path: str, key: IssuedKey | None = None, **kwargs: Any) -> Any:
        return self.client.post(path, headers=self.auth(key), **kwargs)

    def feeder(self) -> BatchFeeder:
        context = self.app.extensions[EXTENSION_KEY]
        return BatchFeeder(context.settings, context.outbox)

    def count(self, model: type, *where: Any) -> int:
        with session_scope(self.settings.database_url) as session:
            return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

    def jobs(self, batch_id: str) -> list[Job]:
        with session_scope(self.settings.database_url) as session:
            return list(
                session.scalars(
                    select(Job).where(Job.batch_id == uuid.UUID(batch_id)).order_by(Job.batch_index)
                )
            )

    def start_jobs(self, job_ids: list[uuid.UUID]) -> None:
        """What a worker's claim does: the jobs are running."""
        with session_scope(self.settings.database_url) as session:
            session.execute(
                update(Job).where(Job.id.in_(job_ids)).values(status=JobStatus.IN_PROGRESS)
            )

    def waiting_in_queue(self) -> int:
        with broker_connection(self.settings) as connection:
            return queue_depth(connection, INFERENCE_QUEUE)


def make_api(settings: Settings, **overrides: Any) -> BatchApi:
    return BatchApi(settings.model_copy(update={"webhook_allow_private": True, **overrides}))


@pytest.fixture
def api(backend_settings: Settings) -> BatchApi:
    return make_api(backend_settings)


def line(custom_id: str, query: str = "Where is my order?", **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "body": {"query": query, **body}}


def lines(count: int, prefix: str = "request") -> list[dict[str, Any]]:
    return [line(f"{prefix}-{n}", f"Question number {n}?") for n in range(count)]


def result_lines(api: BatchApi, batch_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/v1/batches/{batch_id}/results")
    assert response.status_code == 200
    assert response.mimetype == "application/jsonl"
    return [json.loads(text) for text in response.get_data(as_text=True).splitlines()]


# --- stored whole, or refused whole -----------------------------------------------------------


def test_a_json_lines_batch_is_stored_whole_with_its_counts(api: BatchApi) -> None:
    response = api.submit_lines(
        [line("a", session_id="customer-1"), line("b", priority=3), line("c", deadline_s=60)],
        webhook_url=HOOK,
        metadata=json.dumps({"campaign": "spring"}),
    )

    assert response.status_code == 202, response.get_json()
    batch = response.get_json()
    assert response.headers["Location"] == f"/v1/batches/{batch['id']}"
    assert batch["object"] == "batch"
    assert batch["status"] == "in_progress"
    assert batch["metadata"] == {"campaign": "spring"}
    assert batch["request_counts"] == {
        "total": 3, "queued": 3, "in_progress": 0, "completed": 0, "failed": 0,
        "cancelled": 0, "expired": 0,
    }  # fmt: skip
    assert batch["links"]["results"] == f"/v1/batches/{batch['id']}/results"
    jobs = api.jobs(batch["id"])
    assert [(job.batch_index, job.custom_id) for job in jobs] == [(0, "a"), (1, "b"), (2, "c")]
    assert [job.priority for job in jobs] == [0, 3, 0]  # batch jobs default to the lowest
    assert jobs[0].session is not None and jobs[0].session.external_id == "customer-1"
    assert jobs[2].deadline_at is not None
    assert all(job.webhook_url is None for job in jobs)  # no per-job webhooks unless asked
    # nothing is published in the request: the feeder releases the jobs
    assert api.count(OutboxMessage) == 0
    assert api.get(f"/v1/batches/{batch['id']}").get_json() == batch


def test_a_batch_job_names_its_batch_and_the_job_list_filters_by_it(api: BatchApi) -> None:
    batch = api.submit_lines([line("first"), line("second")]).get_json()
    alone = api.post("/v1/jobs", json={"query": "Not in a batch"}).get_json()

    listed = api.get(f"/v1/jobs?batch_id={batch['id']}").get_json()["data"]
    # a batch's jobs share their submission time: their order in the list is the ids'
    listed.sort(key=lambda job: job["custom_id"])
    assert [(job["custom_id"], job["batch_id"]) for job in listed] == [
        ("first", batch["id"]),
        ("second", batch["id"]),
    ]
    assert listed[0]["links"]["batch"] == f"/v1/batches/{batch['id']}"
    one = api.get(f"/v1/jobs/{listed[0]['id']}").get_json()
    assert (one["batch_id"], one["custom_id"]) == (batch["id"], "first")
    assert (alone["batch_id"], alone["custom_id"], alone["links"]["batch"]) == (None, None, None)
    # another tenant's batch id filters down to nothing, never to its jobs
    assert api.get(f"/v1/jobs?batch_id={batch['id']}", api.stranger).get_json()["data"] == []
    assert api.get("/v1/jobs?batch_id=not-a-uuid").status_code == 422


def test_batch_jobs_join_the_tenants_sessions_and_new_ones_are_made(api: BatchApi) -> None:
    assert api.post("/v1/jobs", json={"query": "Hi", "session_id": "customer-7"}).status_code == 202
    count = 600  # more session names than one lookup takes

    response = api.submit_lines(
        [line(f"r{n}", session_id=f"customer-{n}") for n in range(count)]
        + [line("again", session_id="customer-7")]
    )

    assert response.status_code == 202, response.get_json()
    assert api.count(ChatSession) == count
    jobs = api.jobs(response.get_json()["id"])
    by_session = {job.custom_id: job.session_id for job in jobs}
    assert by_session["r7"] == by_session["again"]
    with session_scope(api.settings.database_url) as session:
        alone = session.scalar(select(Job.session_id).where(Job.batch_id.is_(None)))
    assert alone == by_session["r7"]


def test_one_invalid_line_refuses_the_whole_batch_naming_it(api: BatchApi) -> None:
    response = api.submit_lines(
        [
            line("ok-1"),
            '{"custom_id": "broken", "body": {"query": ',
            line("ok-2"),
            {"custom_id": "no-query", "body": {}},
            line("typed", priority="5"),
            line("nul", "a \u0000 b"),
        ]
    )

    assert response.status_code == 422
    problem = response.get_json()
    assert problem["type"] == "urn:chatq:problem:validation-error"
    assert problem["invalid_lines"] == 4
    assert [(e["line"], e["loc"]) for e in problem["errors"]] == [
        (2, "(line)"),
        (4, "body.query"),
        (5, "body.priority"),
        (6, "body.query"),
    ]
    assert "4 of 6 lines are invalid; nothing was stored" in problem["detail"]
    assert api.count(Batch) == api.count(Job) == 0


def test_at_most_twenty_errors_are_listed_but_every_invalid_line_is_counted(
    api: BatchApi,
) -> None:
    response = api.submit_lines([{"custom_id": f"x-{n}", "body": {}} for n in range(30)])

    assert response.status_code == 422
    problem = response.get_json()
    assert len(problem["errors"]) == 20
    assert problem["invalid_lines"] == 30
    assert problem["errors"][-1]["line"] == 20


def test_a_custom_id_is_unique_within_its_batch(api: BatchApi) -> None:
    response = api.submit_lines([line("same"), line("other"), line("same")])

    assert response.status_code == 422
    [error] = response.get_json()["errors"]
    assert (error["line"], error["loc"], error["type"]) == (3, "custom_id", "custom_id_duplicate")
    assert "line 1" in error["message"]
    assert api.count(Job) == 0


def test_blank_lines_are_skipped_and_openai_style_lines_are_taken(api: BatchApi) -> None:
    openai_line = {**line("o"), "method": "POST", "url": "/v1/jobs"}
    response = api.submit_lines(["", openai_line, "   ", line("p"), ""])

    assert response.status_code == 202, response.get_json()
    assert response.get_json()["request_counts"]["total"] == 2
    wrong_url = {**line("q"), "url": "/v1/chat/completions"}
    assert api.submit_lines([wrong_url]).status_code == 422
    assert api.submit_lines(["", "  "]).status_code == 422  # no job at all


def test_the_body_must_be_json_lines(api: BatchApi) -> None:
    response = api.post("/v1/batches", json=[line("a")])

    assert response.status_code == 415
    ndjson = api.post(
        "/v1/batches", data=json.dumps(line("a")), content_type="application/x-ndjson"
    )
    assert ndjson.status_code == 202


def test_the_batch_options_are_checked(api: BatchApi) -> None:
    assert api.submit_lines([line("a")], metadata="not json").status_code == 422
    assert api.submit_lines([line("a")], metadata="[1, 2]").status_code == 422
    refused = api.submit_lines([line("a")], webhook_url="ftp://example.com/hook")
    assert refused.status_code == 422
    assert refused.get_json()["type"] == "urn:chatq:problem:invalid-webhook-url"
    assert api.submit_lines([line("a")], unknown="1").status_code == 422
    assert api.count(Job) == 0


def test_a_job_line_with_a_webhook_that_may_not_be_called_is_named(
    backend_settings: Settings,
) -> None:
    api = make_api(backend_settings, webhook_allow_private=False)

    response = api.submit_lines([line("a"), line("b", webhook_url="http://127.0.0.1/hook")])

    assert response.status_code == 422
    [error] = response.get_json()["errors"]
    assert (error["line"], error["loc"]) == (2, "body.webhook_url")
    assert api.count(Job) == 0


# --- limits -----------------------------------------------------------------------------------


def test_a_batch_over_the_size_limits_is_refused(backend_settings: Settings) -> None:
    api = make_api(backend_settings, max_batch_jobs=3, max_batch_bytes=2048)

    too_many = api.submit_lines(lines(4))
    assert too_many.status_code == 422
    assert (too_many.get_json()["jobs"], too_many.get_json()["limit"]) == (4, 3)
    too_big = api.submit_lines([line("big", "x" * 3000)])
    assert too_big.status_code == 413
    assert api.count(Job) == 0
    assert api.submit_lines(lines(3)).status_code == 202


def test_a_batch_body_may_be_larger_than_other_requests(backend_settings: Settings) -> None:
    api = make_api(backend_settings, max_request_bytes=4096)

    response = api.submit_lines(lines(100))  # about 6 KB

    assert response.status_code == 202
    assert api.post("/v1/jobs", json={"query": "x" * 5000}).status_code == 413


def test_batches_have_their_own_allowance_beside_the_tenants_share(
    backend_settings: Settings,
) -> None:
    api = make_api(backend_settings, tenant_max_open_batch_jobs=5, tenant_max_open_jobs=2)

    # larger than the tenant's share of interactive jobs, within its batch allowance
    assert api.submit_lines(lines(4, "first")).status_code == 202
    over = api.submit_lines(lines(2, "second"))
    assert over.status_code == 429
    assert over.get_json()["type"] == "urn:chatq:problem:tenant-queue-full"
    assert over.get_json()["open_batch_jobs"] == 4
    assert over.headers["Retry-After"]
    # the open batch takes nothing from the interactive share
    assert api.post("/v1/jobs", json={"query": "Still there?"}).status_code == 202
    assert api.post("/v1/jobs", json={"query": "And now?"}).status_code == 202
    assert api.post("/v1/jobs", json={"query": "One more?"}).status_code == 429
    # another tenant's allowance is its own
    assert api.submit_lines(lines(5), key=api.stranger).status_code == 202


def test_the_same_idempotency_key_returns_the_same_batch(api: BatchApi) -> None:
    body = "\n".join(json.dumps(item) for item in lines(3))
    headers = api.auth(**JSONL, **{"Idempotency-Key": "batch-1"})

    first = api.client.post("/v1/batches", data=body, headers=headers)
    again = api.client.post("/v1/batches", data=body, headers=headers)
    longer = "\n".join(json.dumps(item) for item in lines(4))
    other = api.client.post("/v1/batches", data=longer, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 409
    assert api.count(Job) == 3


# --- the JSON form ----------------------------------------------------------------------------


def test_jobs_batch_takes_the_jobs_as_one_json_body(api: BatchApi) -> None:
    response = api.post(
        "/v1/jobs/batch",
        json={
            "jobs": [{"query": "First?"}, {"query": "Second?", "priority": 2}],
            "webhook_url": HOOK,
            "metadata": {"source": "import"},
        },
    )

    assert response.status_code == 202, response.get_json()
    batch = response.get_json()
    assert batch["request_counts"]["total"] == 2
    assert batch["metadata"] == {"source": "import"}
    rows = result_lines(api, batch["id"])
    assert [(row["custom_id"], row["response"]["query"]) for row in rows] == [
        (None, "First?"),
        (None, "Second?"),
    ]


def test_jobs_batch_refuses_every_job_if_one_is_invalid(api: BatchApi) -> None:
    response = api.post("/v1/jobs/batch", json={"jobs": [{"query": "fine"}] + [{"query": ""}] * 25})

    assert response.status_code == 422
    problem = response.get_json()
    assert problem["error_count"] == 25
    assert len(problem["errors"]) == 20
    assert problem["errors"][0]["loc"] == "jobs.1.query"
    assert api.count(Job) == 0
    assert api.post("/v1/jobs/batch", json={"jobs": []}).status_code == 422


# --- reading: isolation, counts, listing, results ---------------------------------------------


def test_another_tenants_batch_is_not_found(api: BatchApi) -> None:
    batch_id = api.submit_lines(lines(2)).get_json()["id"]

    for path in (f"/v1/batches/{batch_id}", f"/v1/batches/{batch_id}/results"):
        assert api.get(path, key=api.stranger).status_code == 404
        assert api.get(path, key=api.colleague).status_code == 200  # the tenant's other key
    assert api.post(f"/v1/batches/{batch_id}/cancel", key=api.stranger).status_code == 404
    assert api.get("/v1/batches", key=api.stranger).get_json()["data"] == []
    assert api.get("/v1/batches/not-an-id").status_code == 404
    assert api.get(f"/v1/batches/{uuid.uuid4()}/results").status_code == 404


def test_counts_follow_the_jobs(api: BatchApi) -> None:
    batch_id = api.submit_lines(lines(4)).get_json()["id"]
    jobs = api.jobs(batch_id)
    api.start_jobs([job.id for job in jobs[:3]])
    record_outcome(api.settings, completed_outcome(jobs[0].id))

    counts = api.get(f"/v1/batches/{batch_id}").get_json()["request_counts"]

    assert counts == {
        "total": 4, "queued": 1, "in_progress": 2, "completed": 1, "failed": 0,
        "cancelled": 0, "expired": 0,
    }  # fmt: skip


def test_batches_are_listed_newest_first_in_pages(api: BatchApi) -> None:
    ids = [api.submit_lines(lines(1, f"b{n}")).get_json()["id"] for n in range(3)]
    api.post(f"/v1/batches/{ids[0]}/cancel")

    first = api.get("/v1/batches?limit=2").get_json()
    second = api.get(f"/v1/batches?limit=2&after={first['next_after']}").get_json()
    cancelled = api.get("/v1/batches?status=cancelled").get_json()

    assert [batch["id"] for batch in first["data"]] == [ids[2], ids[1]]
    assert first["has_more"] is True
    assert [batch["id"] for batch in second["data"]] == [ids[0]]
    assert second["has_more"] is False and second["next_after"] is None
    assert [batch["id"] for batch in cancelled["data"]] == [ids[0]]
    assert first["data"][0]["request_counts"]["queued"] == 1
    assert api.get("/v1/batches?limit=0").status_code == 422
    assert api.get("/v1/batches?after=nonsense").status_code == 422


def test_results_come_in_submission_order_one_line_per_job(
    api: BatchApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_results, "RESULTS_CHUNK", 2)  # several chunks for 5 jobs
    custom_ids = ["zeta", "alpha", "mu", "beta", "omega"]
    batch_id = api.submit_lines([line(name, f"About {name}?") for name in custom_ids]).get_json()[
        "id"
    ]
    jobs = api.jobs(batch_id)
    api.start_jobs([jobs[1].id])
    record_outcome(api.settings, completed_outcome(jobs[1].id, "Alpha it is."))

    rows = result_lines(api, batch_id)

    assert [row["custom_id"] for row in rows] == custom_ids
    assert [row["id"] for row in rows] == [str(job.id) for job in jobs]
    assert [row["status"] for row in rows] == [
        "queued", "completed", "queued", "queued", "queued",
    ]  # fmt: skip
    assert rows[1]["response"]["response"] == "Alpha it is."
    assert rows[1]["response"]["id"] == rows[1]["id"]
    assert rows[0]["response"]["query"] == "About zeta?"


# --- the feeder -------------------------------------------------------------------------------


def test_the_feeder_keeps_only_a_few_batch_jobs_in_the_queue(backend_settings: Settings) -> None:
    api = make_api(backend_settings, batch_feed_depth=4)
    big = api.submit_lines(lines(10, "big")).get_json()["id"]
    feeder = api.feeder()

    assert feeder.run_once() == 4
    assert api.waiting_in_queue() == 4
    assert feeder.run_once() == 0  # the queue is full enough
    small = api.submit_lines(lines(3, "small")).get_json()["id"]
    with broker_connection(api.settings) as connection:
        INFERENCE_QUEUE(connection.default_channel).purge()  # workers took them

    assert feeder.run_once() == 4
    # the room is shared, the batch that has had fewer released first
    released = {batch_id: batch.released for batch_id, batch in batches(api).items()}
    assert released == {uuid.UUID(big): 6, uuid.UUID(small): 2}
    published = api.count(OutboxMessage)
    assert published <= 8  # confirmed rows are deleted as they are confirmed


def test_the_feeder_skips_cancelled_jobs_and_stops_at_the_end(backend_settings: Settings) -> None:
    api = make_api(backend_settings, batch_feed_depth=100)
    batch_id = api.submit_lines(lines(3)).get_json()["id"]
    jobs = api.jobs(batch_id)
    assert api.post(f"/v1/jobs/{jobs[1].id}/cancel").status_code == 200

    assert api.feeder().run_once() == 2
    assert api.waiting_in_queue() == 2
    assert batches(api)[uuid.UUID(batch_id)].released == 3
    assert api.feeder().run_once() == 0


def test_an_idle_feeder_waits_long_and_a_batch_accepted_here_wakes_it(
    backend_settings: Settings,
) -> None:
    api = make_api(backend_settings, batch_feed_depth=100)
    feeder = api.feeder()
    assert feeder.run_once() == 0
    assert feeder.wait_s() == IDLE_ROUND_S  # no batch is open anywhere
    feeder.start()
    try:
        batch_id = api.submit_lines(lines(2)).get_json()["id"]
        # the idle wait is IDLE_ROUND_S: only the wake-up explains a release before half of it
        give_up_at = time.monotonic() + IDLE_ROUND_S / 2
        while batches(api)[uuid.UUID(batch_id)].released < 2:
            assert time.monotonic() < give_up_at, "the accepted batch did not wake the feeder"
            time.sleep(0.02)
        assert feeder.wait_s() == api.settings.batch_feed_interval_s  # a batch is open
    finally:
        feeder.stop()
    assert api.waiting_in_queue() == 2


def batches(api: BatchApi) -> dict[uuid.UUID, Batch]:
    with session_scope(api.settings.database_url) as session:
        return {batch.id: batch for batch in session.scalars(select(Batch))}


# --- cancel -----------------------------------------------------------------------------------


def test_cancel_cancels_queued_jobs_and_the_batch_ends_when_the_running_ones_do(
    api: BatchApi,
) -> None:
    batch_id = api.submit_lines(lines(4), webhook_url=HOOK).get_json()["id"]
    jobs = api.jobs(batch_id)
    api.start_jobs([jobs[0].id])

    cancelled = api.post(f"/v1/batches/{batch_id}/cancel")

    assert cancelled.status_code == 200
    batch = cancelled.get_json()
    assert batch["status"] == "cancelling"
    assert batch["cancelling_at"] is not None and batch["completed_at"] is None
    assert (batch["request_counts"]["cancelled"], batch["request_counts"]["in_progress"]) == (3, 1)
    assert api.post(f"/v1/batches/{batch_id}/cancel").status_code == 409

    record_outcome(api.settings, completed_outcome(jobs[0].id))

    ended = api.get(f"/v1/batches/{batch_id}").get_json()
    assert ended["status"] == "cancelled"
    assert ended["completed_at"] is not None
    [delivery] = batch_deliveries(api, batch_id)
    assert delivery.event_type == "batch.cancelled"
    assert delivery.payload["data"]["request_counts"]["completed"] == 1


def test_a_batch_with_nothing_running_is_cancelled_at_once(api: BatchApi) -> None:
    batch_id = api.submit_lines(lines(2)).get_json()["id"]

    batch = api.post(f"/v1/batches/{batch_id}/cancel").get_json()

    assert batch["status"] == "cancelled"
    assert batch["request_counts"]["cancelled"] == 2
    assert batch_deliveries(api, batch_id) == []  # no webhook_url, no event


def test_a_batch_whose_last_job_is_cancelled_alone_is_ended_by_the_feeder(api: BatchApi) -> None:
    batch_id = api.submit_lines(lines(1), webhook_url=HOOK).get_json()["id"]
    [job] = api.jobs(batch_id)
    assert api.post(f"/v1/jobs/{job.id}/cancel").status_code == 200
    assert api.get(f"/v1/batches/{batch_id}").get_json()["status"] == "in_progress"

    api.feeder().run_once()

    assert api.get(f"/v1/batches/{batch_id}").get_json()["status"] == "completed"
    [delivery] = batch_deliveries(api, batch_id)
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at <= utcnow()  # nobody hands it on: the sweeper takes it now


# --- the end of a batch -----------------------------------------------------------------------


def batch_deliveries(api: BatchApi, batch_id: str) -> list[WebhookDelivery]:
    with session_scope(api.settings.database_url) as session:
        return list(
            session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.batch_id == uuid.UUID(batch_id))
            )
        )


def test_a_batch_completes_once_when_its_last_jobs_finish_at_the_same_moment(
    api: BatchApi,
) -> None:
    rounds, size = 4, 8
    for _ in range(rounds):
        batch_id = api.submit_lines(lines(size), webhook_url=HOOK).get_json()["id"]
        jobs = api.jobs(batch_id)
        api.start_jobs([job.id for job in jobs])
        start = threading.Barrier(size)

        def finish(job: Job, start: threading.Barrier = start) -> list[str]:
            start.wait()  # every post-processor stores its outcome at once
            return record_outcome(api.settings, completed_outcome(job.id))

        with ThreadPoolExecutor(size) as pool:
            handed_on = [ids for ids in pool.map(finish, jobs)]

        batch = api.get(f"/v1/batches/{batch_id}").get_json()
        assert batch["status"] == "completed"
        assert batch["request_counts"]["completed"] == size
        [delivery] = batch_deliveries(api, batch_id)
        assert delivery.event_type == "batch.completed"
        # exactly one finisher ended the batch and handed its delivery on
        assert [ids for ids in handed_on if ids] == [[delivery.id]]
        assert delivery.payload["data"]["status"] == "completed"
        assert delivery.payload["data"]["request_counts"]["completed"] == size
    assert api.count(WebhookDelivery, WebhookDelivery.job_id.is_not(None)) == 0


def test_failed_and_expired_jobs_end_a_batch_too(api: BatchApi) -> None:
    from shared.messaging.schemas import InferenceOutcome, JobError

    batch_id = api.submit_lines(lines(2)).get_json()["id"]
    jobs = api.jobs(batch_id)
    api.start_jobs([job.id for job in jobs])
    for job, status in zip(jobs, ("failed", "expired"), strict=True):
        record_outcome(
            api.settings,
            InferenceOutcome(
                job_id=job.id,
                status=status,
                error=JobError(code=status, message="no"),
                finished_at=utcnow(),
            ),
        )

    batch = api.get(f"/v1/batches/{batch_id}").get_json()
    assert batch["status"] == "completed"
    assert (batch["request_counts"]["failed"], batch["request_counts"]["expired"]) == (1, 1)


def test_a_job_line_with_its_own_webhook_gets_its_job_events(api: BatchApi) -> None:
    batch_id = api.submit_lines(
        [line("quiet"), line("loud", webhook_url=HOOK)], webhook_url=HOOK
    ).get_json()["id"]
    jobs = api.jobs(batch_id)
    api.start_jobs([job.id for job in jobs])
    for job in jobs:
        record_outcome(api.settings, completed_outcome(job.id))

    with session_scope(api.settings.database_url) as session:
        events = sorted(
            (str(row.job_id) if row.job_id else "batch", row.event_type)
            for row in session.scalars(select(WebhookDelivery))
        )
    assert events == sorted([(str(jobs[1].id), "job.completed"), ("batch", "batch.completed")])


@pytest.fixture
def receiver(api: BatchApi) -> Iterator[WebhookReceiver]:
    with WebhookReceiver([api.key.webhook_secret]) as running:
        yield running


def test_the_batch_event_is_delivered_signed_with_the_submitting_keys_secret(
    api: BatchApi, receiver: WebhookReceiver
) -> None:
    batch_id = api.submit_lines(lines(2), webhook_url=receiver.url).get_json()["id"]
    jobs = api.jobs(batch_id)
    api.start_jobs([job.id for job in jobs])
    handed_on = [record_outcome(api.settings, completed_outcome(job.id)) for job in jobs]
    [[delivery_id]] = [ids for ids in handed_on if ids]

    attempt_delivery(api.settings, delivery_id, WebhookClient())

    [received] = receiver.wait_for(1, timeout_s=10)
    assert received.verified
    assert received.headers["webhook-id"] == delivery_id
    assert received.payload is not None
    assert received.payload["type"] == "batch.completed"
    assert received.payload["data"]["id"] == batch_id
    assert received.payload["data"]["request_counts"]["completed"] == 2
    assert "query" not in received.payload["data"]
    [delivery] = batch_deliveries(api, batch_id)
    assert delivery.status is DeliveryStatus.DELIVERED
