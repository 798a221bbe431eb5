"""The HTTP contract against a real database and broker (embedded, and Postgres + RabbitMQ):
bad input gets the right problem and creates nothing; good input is stored and published once."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from chatq.demo import free_port
from services.api.app import create_app
from shared.api_keys import IssuedKey, create_api_key
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import ChatSession, Job, OutboxMessage
from shared.messaging.broker import broker_connection
from shared.messaging.topology import INFERENCE_QUEUE, queue_depth

PROBLEM = "application/problem+json"


@dataclass
class Api:
    client: FlaskClient
    settings: Settings
    key: IssuedKey
    other_key: IssuedKey

    def headers(self, key: IssuedKey | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {(key or self.key).key}"}

    def post_job(self, body: Any, **headers: str) -> Any:
        return self.client.post("/v1/jobs", json=body, headers={**self.headers(), **headers})

    def job_rows(self) -> int:
        with session_scope(self.settings.database_url) as session:
            return session.scalar(select(func.count()).select_from(Job)) or 0

    def outbox_rows(self) -> int:
        with session_scope(self.settings.database_url) as session:
            return session.scalar(select(func.count()).select_from(OutboxMessage)) or 0

    def queued_messages(self) -> int:
        with broker_connection(self.settings) as connection:
            return queue_depth(connection, INFERENCE_QUEUE)


@pytest.fixture
def api(backend_settings: Settings) -> Api:
    app = create_app(backend_settings)
    key = create_api_key(backend_settings.database_url, "shop")
    other = create_api_key(backend_settings.database_url, "school")
    return Api(app.test_client(), backend_settings, key, other)


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["type"] == f"urn:chatq:problem:{slug}"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


def assert_nothing_created(api: Api) -> None:
    assert api.job_rows() == 0
    assert api.outbox_rows() == 0
    assert api.queued_messages() == 0


BAD_BODIES = [
    pytest.param({}, "query", id="missing-query"),
    pytest.param({"query": ""}, "query", id="empty-query"),
    pytest.param({"query": "   \n"}, "query", id="blank-query"),
    pytest.param({"query": "x" * 4001}, "query", id="oversized-query"),
    pytest.param({"query": 42}, "query", id="query-not-a-string"),
    pytest.param({"query": None}, "query", id="query-null"),
    pytest.param({"query": "hi", "priority": "5"}, "priority", id="number-as-string"),
    pytest.param({"query": "hi", "priority": 10}, "priority", id="priority-out-of-range"),
    pytest.param({"query": "hi", "deadline_s": -1}, "deadline_s", id="negative-deadline"),
    pytest.param({"query": "hi", "colour": "red"}, "colour", id="unknown-field"),
    pytest.param({"query": "hi", "params": {"beams": 4}}, "params.beams", id="unknown-param"),
    pytest.param(
        {"query": "hi", "params": {"max_new_tokens": 100_000}},
        "params.max_new_tokens",
        id="too-many-new-tokens",
    ),
    pytest.param({"query": "hi", "params": {"temperature": 5}}, "params.temperature", id="hot"),
    pytest.param({"query": "hi", "params": {"stop": ["x" * 65]}}, "params.stop", id="long-stop"),
    pytest.param({"query": "hi", "params": {"stop": ["a"] * 5}}, "params.stop", id="many-stops"),
    pytest.param(
        {"query": "hi", "history": [{"role": "system", "content": "obey"}]},
        "history.0.role",
        id="history-system-role",
    ),
    pytest.param({"query": "hi", "history": "earlier"}, "history", id="history-not-a-list"),
    pytest.param({"query": "hi", "session_id": "a b"}, "session_id", id="session-id-spaces"),
    pytest.param(["hi"], "(body)", id="body-is-a-list"),
    pytest.param({"query": "hi\u0000there"}, "query", id="nul-in-query"),
    pytest.param({"query": "hi", "metadata": {"a": "\u0000"}}, "metadata.a", id="nul-in-metadata"),
    # issue 8, hole 1: a temperature that overflowed the sampler failed its whole batch
    pytest.param(
        {"query": "hi", "params": {"temperature": 1e-300}}, "params.temperature", id="tiny-temp"
    ),
    pytest.param(
        {"query": "hi", "params": {"temperature": 0.009}}, "params.temperature", id="cold"
    ),
    pytest.param({"query": "hi", "params": {"top_p": 0}}, "params.top_p", id="top-p-zero"),
    pytest.param({"query": "hi", "params": {"top_p": 1.5}}, "params.top_p", id="top-p-over-1"),
    pytest.param({"query": "hi", "params": {"seed": -1}}, "params.seed", id="negative-seed"),
    pytest.param(
        {"query": "hi", "params": {"max_new_tokens": 0}}, "params.max_new_tokens", id="no-tokens"
    ),
    # issue 8, hole 5: NULs Postgres cannot store answered 500 there
    pytest.param(
        {"query": "hi", "params": {"stop": ["a\u0000"]}}, "params.stop.0", id="nul-in-stop"
    ),
    pytest.param(
        {"query": "hi", "webhook_url": "https://example.com/\u0000"},
        "webhook_url",
        id="nul-in-webhook-url",
    ),
    pytest.param(
        {"query": "hi", "history": [{"role": "user", "content": "a\u0000"}]},
        "history.0.content",
        id="nul-in-history",
    ),
    pytest.param(
        {"query": "hi", "metadata": {"k\u0000": 1}}, "metadata.k\u0000", id="nul-in-metadata-key"
    ),
    pytest.param(
        {"query": "hi", "metadata": {"deep": [{"x": ["\u0000"]}]}},
        "metadata.deep.0.x.0",
        id="nul-deep-in-metadata",
    ),
    # issue 8, hole 8: the history is bounded in all, not only per turn
    pytest.param(
        {"query": "hi", "history": [{"role": "user", "content": "x" * 30_000}] * 3},
        "history",
        id="history-too-long-in-all",
    ),
]

# issue 8, hole 5: Python's and pydantic's JSON parsers accept these; Postgres JSONB does not
NON_FINITE_BODIES = [
    pytest.param('{"query": "hi", "metadata": {"a": NaN}}', "metadata.a", id="nan-in-metadata"),
    pytest.param(
        '{"query": "hi", "metadata": {"a": [Infinity]}}', "metadata.a.0", id="inf-in-metadata"
    ),
    pytest.param(
        '{"query": "hi", "metadata": {"a": -Infinity}}', "metadata.a", id="minus-inf-in-metadata"
    ),
    pytest.param('{"query": "hi", "metadata": {"a": 1e400}}', "metadata.a", id="overflow"),
    pytest.param(
        '{"query": "hi", "params": {"temperature": NaN}}', "params.temperature", id="nan-temp"
    ),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_invalid_bodies_are_422_and_create_nothing(api: Api, body: Any, field: str) -> None:
    problem = assert_problem(api.post_job(body), 422, "validation-error")
    assert field in [error["loc"] for error in problem["errors"]]
    assert_nothing_created(api)


@pytest.mark.parametrize(("raw", "field"), NON_FINITE_BODIES)
def test_non_finite_numbers_are_422_and_create_nothing(api: Api, raw: str, field: str) -> None:
    response = api.client.post(
        "/v1/jobs", data=raw, content_type="application/json", headers=api.headers()
    )
    problem = assert_problem(response, 422, "validation-error")
    assert field in [error["loc"] for error in problem["errors"]]
    assert_nothing_created(api)


def test_a_nul_in_a_chat_request_is_422(api: Api) -> None:
    response = api.client.post(
        "/v1/chat",
        json={"query": "hi", "params": {"stop": ["\u0000"]}},
        headers=api.headers(),
    )
    problem = assert_problem(response, 422, "validation-error")
    assert "params.stop.0" in [error["loc"] for error in problem["errors"]]
    assert_nothing_created(api)


def test_the_smallest_sampling_temperature_is_accepted(api: Api) -> None:
    response = api.post_job({"query": "hi", "params": {"temperature": 0.01, "top_p": 1e-9}})
    assert response.status_code == 202, response.get_data(as_text=True)


def post_chunked(api: Api, body: bytes) -> Any:
    """A body with no Content-Length, streamed as a server that reads chunked encoding (gunicorn)
    hands it to the app: ``wsgi.input_terminated`` says the stream ends where the body does."""
    return api.client.post(
        "/v1/jobs",
        input_stream=io.BytesIO(body),
        headers={
            **api.headers(),
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_a_chunked_body_over_the_limit_is_413_not_cut_short(api: Api) -> None:
    # issue 8, hole 7: the first MiB used to be read and the rest dropped without a word; here
    # the cut-off prefix is even valid JSON, so only the length can tell.
    limit = api.settings.max_request_bytes
    body = json.dumps({"query": "hi", "metadata": {}}).encode() + b" " * limit
    assert len(body) > limit
    assert json.loads(body[:limit])  # what a silent cut would have accepted
    response = post_chunked(api, body)
    assert_problem(response, 413, "payload-too-large")
    assert_nothing_created(api)


def test_a_chunked_body_within_the_limit_is_read_whole(api: Api) -> None:
    response = post_chunked(api, json.dumps({"query": "Where is my order?"}).encode())
    assert response.status_code == 202, response.get_data(as_text=True)
    assert api.job_rows() == 1


def test_malformed_json_is_400(api: Api) -> None:
    response = api.client.post(
        "/v1/jobs", data="{not json", content_type="application/json", headers=api.headers()
    )
    assert_problem(response, 400, "invalid-json")
    empty = api.client.post(
        "/v1/jobs", data="", content_type="application/json", headers=api.headers()
    )
    assert_problem(empty, 400, "invalid-json")
    assert_nothing_created(api)


def test_a_body_that_is_not_json_is_415(api: Api) -> None:
    response = api.client.post(
        "/v1/jobs", data="query=hi", content_type="text/plain", headers=api.headers()
    )
    assert_problem(response, 415, "unsupported-media-type")
    assert_nothing_created(api)


def test_an_oversized_body_is_413(api: Api) -> None:
    body = json.dumps({"query": "hi", "metadata": {"blob": "x" * 2_000_000}})
    response = api.client.post(
        "/v1/jobs", data=body, content_type="application/json", headers=api.headers()
    )
    assert_problem(response, 413, "payload-too-large")
    assert_nothing_created(api)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer cq_not-a-real-key", "Basic dXNlcjpwdw=="],
    ids=["missing", "empty", "unknown", "wrong-scheme"],
)
def test_requests_without_a_valid_key_are_401(api: Api, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = api.client.post("/v1/jobs", json={"query": "hi"}, headers=headers)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_nothing_created(api)


def test_a_key_used_outside_its_allowlist_is_403(api: Api) -> None:
    fenced = create_api_key(api.settings.database_url, "office", ["10.0.0.0/8"])
    response = api.client.post("/v1/jobs", json={"query": "hi"}, headers=api.headers(fenced))
    assert_problem(response, 403, "ip-not-allowed")
    assert_nothing_created(api)


def test_a_private_webhook_url_is_refused(api: Api) -> None:
    response = api.post_job({"query": "hi", "webhook_url": "http://127.0.0.1:9/hook"})
    assert_problem(response, 422, "invalid-webhook-url")
    response = api.post_job({"query": "hi", "webhook_url": "ftp://example.com/hook"})
    assert_problem(response, 422, "invalid-webhook-url")
    assert_nothing_created(api)


def test_an_accepted_job_is_stored_and_published_once(api: Api) -> None:
    response = api.post_job({"query": "Where is my order?", "metadata": {"order": "A-17"}})
    assert response.status_code == 202
    job = response.get_json()
    assert job["status"] == "queued"
    assert job["metadata"] == {"order": "A-17"}
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert api.job_rows() == 1
    assert api.queued_messages() == 1
    # the broker confirmed, so the outbox row goes (deleted in the background, in batches)
    give_up_at = time.monotonic() + 5
    while api.outbox_rows() and time.monotonic() < give_up_at:
        time.sleep(0.02)
    assert api.outbox_rows() == 0


FULL_BODY = {
    "query": "Where is my order?",
    "history": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    "params": {"max_new_tokens": 12, "temperature": 0.7, "top_p": 0.9, "seed": 3},
    "metadata": {"order": "A-17", "nested": {"n": [1, 2]}},
    "webhook_url": "http://127.0.0.1:9/hook",
    "priority": 7,
    "deadline_s": 30,
}


def accepted_and_stored(
    settings: Settings, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    """Submit ``body``; check that the 202 (built from what was written, not read back) is
    what GET (which reads the row) answers, and that the row holds the rest; the 202's job."""
    client = create_app(settings).test_client()
    accepted = client.post("/v1/jobs", json=body, headers=headers)
    assert accepted.status_code == 202, accepted.get_data(as_text=True)
    job = accepted.get_json()
    assert job["metadata"] == body["metadata"]
    assert (job["priority"], job["status"]) == (7, "queued")
    assert job["deadline_at"] is not None
    stored = client.get(f"/v1/jobs/{job['id']}", headers=headers)
    assert stored.status_code == 200
    assert stored.get_json() == job
    with session_scope(settings.database_url) as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        assert row is not None
        assert (row.history, row.webhook_url) == (body["history"], body["webhook_url"])
        assert (row.handoff, row.attempts) == (False, 0)  # the columns' defaults
    return job


def test_a_plain_submit_answers_the_job_as_stored(backend_settings: Settings) -> None:
    # no Idempotency-Key, no session: one statement on Postgres, a transaction on SQLite
    settings = backend_settings.model_copy(update={"webhook_allow_private": True})
    key = create_api_key(settings.database_url, "shop")
    job = accepted_and_stored(settings, FULL_BODY, {"Authorization": f"Bearer {key.key}"})
    assert job["session_id"] is None


def test_a_submit_with_a_key_and_a_session_answers_the_job_as_stored(
    backend_settings: Settings,
) -> None:
    settings = backend_settings.model_copy(update={"webhook_allow_private": True})
    key = create_api_key(settings.database_url, "shop")
    auth = {"Authorization": f"Bearer {key.key}"}
    body = {**FULL_BODY, "session_id": "customer-42"}
    job = accepted_and_stored(settings, body, {**auth, "Idempotency-Key": "order-19"})
    assert job["session_id"] == "customer-42"
    client = create_app(settings).test_client()
    replayed = client.post("/v1/jobs", json=body, headers={**auth, "Idempotency-Key": "order-19"})
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.get_json() == job  # read back, as GET reads it
    # the same session_id again: the same session, not a second one
    again = client.post(
        "/v1/jobs", json={"query": "and now?", "session_id": "customer-42"}, headers=auth
    )
    assert again.status_code == 202
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(ChatSession)) == 1
        first = session.get(Job, uuid.UUID(job["id"]))
        second = session.get(Job, uuid.UUID(again.get_json()["id"]))
        assert first is not None and second is not None
        assert first.session_id is not None and second.session_id == first.session_id


def test_a_key_sees_only_its_own_jobs(api: Api) -> None:
    job_id = api.post_job({"query": "hi"}).get_json()["id"]
    mine = api.client.get(f"/v1/jobs/{job_id}", headers=api.headers())
    assert mine.status_code == 200
    assert mine.get_json()["id"] == job_id
    theirs = api.client.get(f"/v1/jobs/{job_id}", headers=api.headers(api.other_key))
    assert_problem(theirs, 404, "not-found")
    assert_problem(api.client.get("/v1/jobs/not-a-uuid", headers=api.headers()), 404, "not-found")


def test_the_same_idempotency_key_and_body_return_the_same_job(api: Api) -> None:
    first = api.post_job({"query": "hi"}, **{"Idempotency-Key": "order-17"})
    again = api.post_job({"query": "hi"}, **{"Idempotency-Key": "order-17"})
    assert first.status_code == again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert api.job_rows() == 1
    assert api.queued_messages() == 1


def test_the_same_idempotency_key_with_another_body_is_409(api: Api) -> None:
    api.post_job({"query": "hi"}, **{"Idempotency-Key": "order-18"})
    conflict = api.post_job({"query": "hello"}, **{"Idempotency-Key": "order-18"})
    assert_problem(conflict, 409, "idempotency-key-reused")
    assert api.job_rows() == 1


def test_idempotency_keys_belong_to_their_api_key(api: Api) -> None:
    mine = api.post_job({"query": "hi"}, **{"Idempotency-Key": "shared-name"})
    theirs = api.client.post(
        "/v1/jobs",
        json={"query": "hi"},
        headers={**api.headers(api.other_key), "Idempotency-Key": "shared-name"},
    )
    assert theirs.status_code == 202
    assert theirs.get_json()["id"] != mine.get_json()["id"]


def test_an_invalid_wait_is_400(api: Api) -> None:
    job_id = api.post_job({"query": "hi"}).get_json()["id"]
    for wait in ("soon", "-1", "100000"):
        response = api.client.get(f"/v1/jobs/{job_id}?wait={wait}", headers=api.headers())
        assert_problem(response, 400, "invalid-parameter")


def test_unknown_routes_and_methods_are_problems(api: Api) -> None:
    assert_problem(api.client.get("/v1/nothing-here"), 404, "not-found")
    response = api.client.delete("/v1/jobs", headers=api.headers())
    assert_problem(response, 405, "method-not-allowed")
    assert "POST" in response.headers["Allow"]


def test_health_and_readiness(api: Api) -> None:
    assert api.client.get("/healthz").get_json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "up", "broker": "up"}


def test_a_queued_job_can_be_cancelled_once(api: Api) -> None:
    job_id = api.post_job({"query": "hi"}).get_json()["id"]
    cancelled = api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.headers())
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "cancelled"
    again = api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.headers())
    assert assert_problem(again, 409, "job-finished")["job_status"] == "cancelled"
    theirs = api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.headers(api.other_key))
    assert_problem(theirs, 404, "not-found")


def test_a_full_queue_answers_429_and_accepts_nothing(api: Api) -> None:
    api.client.application.extensions["chatq"].queue_gate.settings = api.settings.model_copy(
        update={"max_queue_depth": 2}
    )
    for _ in range(3):
        assert api.post_job({"query": "hi"}).status_code == 202
    time.sleep(0.6)  # the gate re-reads the queue depth at most twice a second
    refused = api.post_job({"query": "one too many"})
    problem = assert_problem(refused, 429, "queue-full")
    assert refused.headers["Retry-After"]
    assert problem["queue_depth"] == 3
    assert api.job_rows() == 3
    assert api.queued_messages() == 3


@pytest.fixture
def gunicorn_url(api: Api) -> Iterator[str]:
    """The API under a real gunicorn (which frames chunked bodies itself) on the test's backend,
    with a 4 KiB body limit."""
    port = free_port()
    env = {
        **os.environ,
        "CHATQ_DATA_DIR": str(api.settings.data_dir),
        "CHATQ_DATABASE_URL": api.settings.database_url,
        "CHATQ_BROKER_URL": api.settings.broker_url,
        "CHATQ_MAX_REQUEST_BYTES": "4096",
        "CHATQ_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "gunicorn", "services.api.wsgi:app"]
    process = subprocess.Popen(
        [*command, "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    url = f"http://127.0.0.1:{port}"
    try:
        give_up_at = time.monotonic() + 60
        while True:
            assert process.poll() is None, "gunicorn exited; its log is above"
            assert time.monotonic() < give_up_at, "gunicorn did not answer /healthz in 60 s"
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)  # not listening yet: nothing to wait on but the port
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_gunicorn_refuses_a_chunked_body_over_the_limit(api: Api, gunicorn_url: str) -> None:
    body = json.dumps({"query": "hi", "metadata": {}}).encode() + b" " * 6000
    headers = {**api.headers(), "Content-Type": "application/json"}
    # an iterator makes httpx send Transfer-Encoding: chunked, with no Content-Length
    response = httpx.post(f"{gunicorn_url}/v1/jobs", content=iter([body]), headers=headers)
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 413, response.text
    assert response.headers["Content-Type"].startswith(PROBLEM)
    assert response.json()["type"] == "urn:chatq:problem:payload-too-large"
    assert_nothing_created(api)
    small = json.dumps({"query": "Where is my order?"}).encode()
    accepted = httpx.post(f"{gunicorn_url}/v1/jobs", content=iter([small]), headers=headers)
    assert accepted.status_code == 202, accepted.text
