"""Keys and limits against a real database (embedded SQLite, and Postgres): scopes, the admin
API, rotation and revocation (CLI and API), per-key rate limits shared by processes, the cap on
open waits and each tenant's share of the queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, func, select, text

from chatq.demo import free_port
from chatq.stack import Stack
from services.api.app import create_app
from services.api.jobs.service import SLOT_GRACE_S
from shared.api_keys import TENANT_SCOPES, IssuedKey, Scope, create_api_key
from shared.config import Settings
from shared.db.engine import dispose_engine, session_scope
from shared.db.migrate import upgrade_database
from shared.db.models import ApiKey, Job, OpenWait
from tests.conftest import NamespaceFactory, prepare_backend, settings_from_env

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
REPO_ROOT = Path(__file__).resolve().parents[2]


def client_for(settings: Settings, **overrides: Any) -> FlaskClient:
    """An API process of its own (its own key cache) on the shared database."""
    return create_app(settings.model_copy(update=overrides)).test_client()


def bearer(key: IssuedKey | str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key if isinstance(key, str) else key.key}"}


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["type"] == f"urn:chatq:problem:{slug}"
    return body


def submit(client: FlaskClient, key: IssuedKey, query: str = "Where is my order?") -> Any:
    return client.post("/v1/jobs", json={"query": query}, headers=bearer(key))


# --- scopes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    method: str
    path: str
    body: dict[str, Any] | None
    ok: int


# one request per scope that the scope allows (and nothing less than it does)
PROBES = {
    Scope.JOBS_WRITE: Probe("POST", "/v1/jobs", {"query": "Where is my order?"}, 202),
    Scope.JOBS_READ: Probe("GET", "/v1/jobs/{job_id}", None, 200),
    Scope.KNOWLEDGE_WRITE: Probe("GET", "/v1/intents", None, 200),
    Scope.ADMIN: Probe("GET", "/v1/keys", None, 200),
}


@pytest.mark.parametrize("scope", list(Scope), ids=str)
def test_a_key_may_do_what_its_scope_allows_and_gets_403_naming_the_scope_otherwise(
    backend_settings: Settings, scope: Scope
) -> None:
    client = client_for(backend_settings)
    owner = create_api_key(backend_settings.database_url, "shop")
    job_id = submit(client, owner).get_json()["id"]
    key = create_api_key(
        backend_settings.database_url, "narrow", tenant="shop", scopes=[scope.value]
    )
    for probe_scope, probe in PROBES.items():
        response = client.open(
            probe.path.format(job_id=job_id), method=probe.method, json=probe.body,
            headers=bearer(key),
        )  # fmt: skip
        if probe_scope is scope or scope is Scope.ADMIN:
            assert response.status_code == probe.ok, (probe, response.get_data(as_text=True))
        else:
            problem = assert_problem(response, 403, "insufficient-scope")
            assert problem["required_scope"] == probe_scope.value
            assert probe_scope.value in problem["detail"]


def test_keys_from_before_scopes_get_every_scope(
    tmp_path: Path, server_namespace_factory: NamespaceFactory
) -> None:
    for url in (f"sqlite:///{tmp_path / 'old.db'}", server_namespace_factory().database_url):
        upgrade_database(url, "0004")
        engine = create_engine(url)
        key_id, tenant_id = uuid.uuid4(), uuid.uuid4()
        sqlite = url.startswith("sqlite")
        ids = {
            "key": key_id.hex if sqlite else key_id,
            "tenant": tenant_id.hex if sqlite else tenant_id,
        }
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO tenants (id, name, settings, knowledge_version, created_at,"
                    " updated_at) VALUES (:tenant, 'shop', '{}', 1, :now, :now)"
                ),
                {**ids, "now": datetime.now(UTC)},
            )
            connection.execute(
                text(
                    "INSERT INTO api_keys (id, tenant_id, name, key_prefix, key_hash,"
                    " webhook_secret, allowed_cidrs, created_at) VALUES (:key, :tenant, 'shop',"
                    " 'cq_x', 'h', 'whsec_x', '[]', :now)"
                ),
                {**ids, "now": datetime.now(UTC)},
            )
        engine.dispose()
        upgrade_database(url)
        with session_scope(url) as session:
            assert session.get(ApiKey, key_id).scopes == [s.value for s in TENANT_SCOPES]  # type: ignore[union-attr]
        dispose_engine(url)


# --- the admin API ----------------------------------------------------------------------------


def test_an_admin_key_manages_only_its_tenants_keys(backend_settings: Settings) -> None:
    client = client_for(backend_settings)
    url = backend_settings.database_url
    admin = create_api_key(url, "shop")
    theirs = create_api_key(url, "school")

    created = client.post(
        "/v1/keys",
        json={"name": "ci", "scopes": ["jobs:write", "jobs:read"], "rate_limit_per_s": 5.0},
        headers=bearer(admin),
    )
    assert created.status_code == 201
    body = created.get_json()
    assert body["key"].startswith("cq_") and body["webhook_secret"].startswith("whsec_")
    assert body["scopes"] == ["jobs:write", "jobs:read"] and body["tenant"] == "shop"
    assert submit(client, body["key"]).status_code == 202  # type: ignore[arg-type]

    listed = client.get("/v1/keys", headers=bearer(admin)).get_json()["data"]
    assert {k["name"] for k in listed} == {"shop", "ci"}
    assert all("key" not in k and "webhook_secret" not in k for k in listed)  # shown once

    for action in ("revoke", "rotate"):
        other = client.post(f"/v1/keys/{theirs.id}/{action}", headers=bearer(admin))
        assert_problem(other, 404, "not-found")
    assert submit(client, theirs).status_code == 202  # untouched

    bad = client.post(
        "/v1/keys", json={"name": "x", "scopes": ["jobs:delete"]}, headers=bearer(admin)
    )
    assert_problem(bad, 422, "validation-error")


def test_a_tenant_admin_can_neither_issue_nor_rotate_an_operator_key(
    backend_settings: Settings,
) -> None:
    client = client_for(backend_settings)
    url = backend_settings.database_url
    admin = create_api_key(url, "shop")
    operator = create_api_key(url, "ops", tenant="shop", scopes=["operator"])
    issued = client.post(
        "/v1/keys", json={"name": "x", "scopes": ["operator"]}, headers=bearer(admin)
    )
    assert assert_problem(issued, 403, "insufficient-scope")["required_scope"] == "operator"
    rotated = client.post(f"/v1/keys/{operator.id}/rotate", headers=bearer(admin))
    assert_problem(rotated, 403, "insufficient-scope")
    assert client.get("/v1/operator/models", headers=bearer(operator)).status_code == 200
    # revoking stays the tenant admin's right: it takes power away, it gives none
    revoked = client.post(f"/v1/keys/{operator.id}/revoke", headers=bearer(admin))
    assert revoked.status_code == 200


def test_a_rotated_key_works_at_once_and_the_old_one_until_its_grace_period_ends(
    backend_settings: Settings,
) -> None:
    client = client_for(backend_settings)
    url = backend_settings.database_url
    admin = create_api_key(url, "shop")
    worker = create_api_key(url, "backend", tenant="shop", scopes=["jobs:write", "jobs:read"])

    long_grace = client.post(
        f"/v1/keys/{worker.id}/rotate", json={"grace_s": 3600}, headers=bearer(admin)
    )
    assert long_grace.status_code == 201
    successor = long_grace.get_json()
    # same tenant, scopes and webhook secret (receivers go on verifying)
    assert successor["scopes"] == ["jobs:write", "jobs:read"]
    assert successor["webhook_secret"] == worker.webhook_secret
    job = submit(client, successor["key"]).get_json()  # type: ignore[arg-type]
    assert submit(client, worker).status_code == 202  # the old key still works
    # the tenant's jobs stay visible to both keys
    assert client.get(f"/v1/jobs/{job['id']}", headers=bearer(worker)).status_code == 200

    no_grace = client.post(
        f"/v1/keys/{successor['id']}/rotate", json={"grace_s": 0}, headers=bearer(admin)
    )
    assert no_grace.status_code == 201
    # a process that had not read the key yet (others see it within CHATQ_KEY_CACHE_TTL_S)
    fresh = client_for(backend_settings)
    assert_problem(submit(fresh, successor["key"]), 401, "unauthorized")  # type: ignore[arg-type]
    newest = no_grace.get_json()["key"]
    assert client.get(f"/v1/jobs/{job['id']}", headers=bearer(newest)).status_code == 200
    again = client.post(f"/v1/keys/{successor['id']}/rotate", headers=bearer(admin))
    assert_problem(again, 409, "key-not-usable")


def test_a_key_revoked_through_the_api_is_refused_by_another_process_within_a_second(
    backend_settings: Settings,
) -> None:
    url = backend_settings.database_url
    admin = create_api_key(url, "shop")
    victim = create_api_key(url, "leaked", tenant="shop")
    first, second = client_for(backend_settings), client_for(backend_settings)
    assert second.get("/v1/jobs/" + str(uuid.uuid4()), headers=bearer(victim)).status_code == 404
    revoked = first.post(f"/v1/keys/{victim.id}/revoke", headers=bearer(admin))
    assert revoked.status_code == 200 and revoked.get_json()["status"] == "revoked"
    time.sleep(1.1)  # the promise under test: refused everywhere 1 s after the revocation
    assert_problem(submit(second, victim), 401, "unauthorized")


# --- the CLI ----------------------------------------------------------------------------------


def run_cli(settings: Settings, *args: str) -> str:
    env = {**os.environ, "CHATQ_DATABASE_URL": settings.database_url}
    env["CHATQ_DATA_DIR"] = str(settings.data_dir)
    completed = subprocess.run(
        [sys.executable, "-m", "chatq.cli", *args],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_the_cli_creates_lists_rotates_and_revokes_keys(backend_settings: Settings) -> None:
    client = client_for(backend_settings)
    created = json.loads(
        run_cli(backend_settings, "keys", "create", "--name", "shop", "--scopes", "jobs:read",
                "--rate-limit", "2", "--burst", "4", "--json")
    )  # fmt: skip
    assert created["scopes"] == ["jobs:read"]
    assert_problem(submit(client, created["key"]), 403, "insufficient-scope")

    rotated = json.loads(
        run_cli(backend_settings, "keys", "rotate", created["id"], "--grace-s", "600", "--json")
    )
    listed = json.loads(run_cli(backend_settings, "keys", "list", "--tenant", "shop", "--json"))
    assert {(k["id"], k["status"]) for k in listed} == {
        (created["id"], "expiring"),
        (rotated["id"], "active"),
    }
    assert all(k["rate_limit_per_s"] == 2.0 and k["rate_limit_burst"] == 4 for k in listed)

    run_cli(backend_settings, "keys", "revoke", created["key"][:10])  # by its prefix
    statuses = {
        k["id"]: k["status"]
        for k in json.loads(run_cli(backend_settings, "keys", "list", "--json"))
    }
    assert statuses == {created["id"]: "revoked", rotated["id"]: "active"}
    time.sleep(1.1)
    probe = client.get(f"/v1/jobs/{uuid.uuid4()}", headers=bearer(created["key"]))
    assert_problem(probe, 401, "unauthorized")


# --- rate limits ------------------------------------------------------------------------------


def test_a_key_over_its_rate_gets_429_with_retry_after_and_ratelimit_headers_on_every_process(
    backend_settings: Settings,
) -> None:
    limits = {"rate_limit_per_s": 0.2, "rate_limit_burst": 3}
    first, second = client_for(backend_settings, **limits), client_for(backend_settings, **limits)
    key = create_api_key(backend_settings.database_url, "shop")
    other = create_api_key(backend_settings.database_url, "school")

    accepted = [submit(first, key), submit(second, key), submit(first, key)]
    assert [r.status_code for r in accepted] == [202, 202, 202]
    assert accepted[0].headers["RateLimit-Policy"] == '"key";q=3;w=15'
    assert accepted[-1].headers["RateLimit"].startswith('"key";r=0;')

    refused = submit(second, key)  # the bucket is shared: the other process refuses too
    problem = assert_problem(refused, 429, "rate-limited")
    assert "0.2 requests per second" in problem["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 5
    assert refused.headers["RateLimit"].startswith('"key";r=0;t=')
    assert submit(first, other).status_code == 202  # buckets are per key
    with session_scope(backend_settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 4


def test_polls_cost_less_than_submits_and_a_key_can_have_its_own_rate(
    backend_settings: Settings,
) -> None:
    client = client_for(backend_settings, rate_limit_per_s=0.01, rate_limit_burst=1)
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    roomy = create_api_key(url, "bulk", tenant="shop", rate_limit_per_s=100.0, rate_limit_burst=50)
    job_id = submit(client, key).get_json()["id"]
    assert_problem(submit(client, key), 429, "rate-limited")
    for _ in range(5):  # 0.1 token each: nothing left after the submit took the only one
        assert_problem(client.get(f"/v1/jobs/{job_id}", headers=bearer(key)), 429, "rate-limited")
    for _ in range(10):
        assert client.get(f"/v1/jobs/{job_id}", headers=bearer(roomy)).status_code == 200
    assert submit(client, roomy).status_code == 202


# --- open waits and the tenant's share of the queue --------------------------------------------


def open_waits(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        return session.scalar(select(func.count()).select_from(OpenWait)) or 0


def wait_until(condition: Any, timeout_s: float = 10.0) -> None:
    give_up_at = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < give_up_at, "condition never came true"
        time.sleep(0.02)


def test_a_key_holds_at_most_its_cap_of_open_waits_across_processes(
    backend_settings: Settings,
) -> None:
    first = client_for(backend_settings, max_open_waits_per_key=1)
    second = client_for(backend_settings, max_open_waits_per_key=1)
    key = create_api_key(backend_settings.database_url, "shop")
    other = create_api_key(backend_settings.database_url, "school")
    job_id = submit(first, key).get_json()["id"]
    other_job = submit(first, other).get_json()["id"]

    results: list[Any] = []
    waiter = threading.Thread(
        target=lambda: results.append(first.get(f"/v1/jobs/{job_id}?wait=20", headers=bearer(key)))
    )
    waiter.start()
    wait_until(lambda: open_waits(backend_settings) == 1)

    refused = second.get(f"/v1/jobs/{job_id}?wait=5", headers=bearer(key))
    assert_problem(refused, 429, "too-many-waits")
    assert refused.headers["Retry-After"] == "1"
    jobs_before = submit(second, key).status_code  # submitting and plain polls still work
    assert jobs_before == 202
    assert second.get(f"/v1/jobs/{job_id}", headers=bearer(key)).status_code == 200
    chat = second.post("/v1/chat", json={"query": "Hello?"}, headers=bearer(key))
    assert_problem(chat, 429, "too-many-waits")
    with session_scope(backend_settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 3  # the chat made none
    # another key is not held back
    assert second.get(f"/v1/jobs/{other_job}?wait=0.1", headers=bearer(other)).status_code == 200

    assert first.post(f"/v1/jobs/{job_id}/cancel", headers=bearer(key)).status_code == 200
    waiter.join(timeout=20)
    assert results[0].get_json()["status"] == "cancelled"
    # the slot goes back once the answer is written, when the server closes the response
    assert open_waits(backend_settings) == 1
    results[0].close()
    assert open_waits(backend_settings) == 0


def test_a_long_poll_answered_within_the_grace_needs_no_slot(
    backend_settings: Settings,
) -> None:
    """A wait takes a slot only once it has lasted SLOT_GRACE_S: a job that finishes sooner
    is answered even while the key's slots are all held (and writes no slot)."""
    client = client_for(backend_settings, max_open_waits_per_key=1)
    key = create_api_key(backend_settings.database_url, "shop")
    held = submit(client, key).get_json()["id"]
    quick = submit(client, key).get_json()["id"]
    results: dict[str, Any] = {}
    holder = threading.Thread(
        target=lambda: results.update(
            held=client.get(f"/v1/jobs/{held}?wait=20", headers=bearer(key))
        )
    )
    holder.start()
    wait_until(lambda: open_waits(backend_settings) == 1)

    poll = threading.Thread(
        target=lambda: results.update(
            quick=client.get(f"/v1/jobs/{quick}?wait=20", headers=bearer(key))
        )
    )
    poll.start()
    time.sleep(SLOT_GRACE_S / 4)
    assert client.post(f"/v1/jobs/{quick}/cancel", headers=bearer(key)).status_code == 200
    poll.join(timeout=10)
    assert results["quick"].status_code == 200
    assert results["quick"].get_json()["status"] == "cancelled"
    # past the grace, a wait for a job still running needs the slot, which is held
    assert_problem(
        client.get(f"/v1/jobs/{held}?wait=5", headers=bearer(key)), 429, "too-many-waits"
    )

    assert client.post(f"/v1/jobs/{held}/cancel", headers=bearer(key)).status_code == 200
    holder.join(timeout=20)
    results["held"].close()
    assert open_waits(backend_settings) == 0


def test_a_finished_job_is_answered_at_once_without_taking_a_wait_slot(
    backend_settings: Settings,
) -> None:
    """A long-poll of a job that is already finished waits for nothing: it is answered even
    when the key holds all its wait slots, and leaves no slot behind."""
    client = client_for(backend_settings, max_open_waits_per_key=1)
    key = create_api_key(backend_settings.database_url, "shop")
    waited_for = submit(client, key).get_json()["id"]
    finished = submit(client, key).get_json()["id"]
    assert client.post(f"/v1/jobs/{finished}/cancel", headers=bearer(key)).status_code == 200

    results: list[Any] = []
    waiter = threading.Thread(
        target=lambda: results.append(
            client.get(f"/v1/jobs/{waited_for}?wait=20", headers=bearer(key))
        )
    )
    waiter.start()
    wait_until(lambda: open_waits(backend_settings) == 1)

    answered = client.get(f"/v1/jobs/{finished}?wait=5", headers=bearer(key))
    assert answered.status_code == 200
    assert answered.get_json()["status"] == "cancelled"
    assert open_waits(backend_settings) == 1  # only the waiter's
    # a job still running needs a slot, and there is none
    assert_problem(
        client.get(f"/v1/jobs/{waited_for}?wait=5", headers=bearer(key)), 429, "too-many-waits"
    )

    assert client.post(f"/v1/jobs/{waited_for}/cancel", headers=bearer(key)).status_code == 200
    waiter.join(timeout=20)
    assert results[0].get_json()["status"] == "cancelled"
    results[0].close()  # as the server does once the answer is written
    assert open_waits(backend_settings) == 0


def test_a_tenant_past_its_share_of_open_jobs_gets_429_and_others_do_not(
    backend_settings: Settings,
) -> None:
    client = client_for(backend_settings, tenant_max_open_jobs=2)
    key = create_api_key(backend_settings.database_url, "shop")
    same_tenant = create_api_key(backend_settings.database_url, "shop-2", tenant="shop")
    other = create_api_key(backend_settings.database_url, "school")
    ids = [submit(client, key).get_json()["id"] for _ in range(2)]

    refused = submit(client, same_tenant)  # the share is the tenant's, over all its keys
    problem = assert_problem(refused, 429, "tenant-queue-full")
    assert refused.headers["Retry-After"]
    assert problem["open_jobs"] == 2 and problem["limit"] == 2
    assert submit(client, other).status_code == 202

    assert client.post(f"/v1/jobs/{ids[0]}/cancel", headers=bearer(key)).status_code == 200
    assert submit(client, key).status_code == 202
    with session_scope(backend_settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 4


# --- several gunicorn processes -----------------------------------------------------------------


@pytest.fixture
def api_processes(
    tmp_path: Path, server_namespace_factory: NamespaceFactory
) -> Iterator[tuple[Stack, Settings]]:
    """The API alone, three gunicorn processes on Postgres and RabbitMQ."""
    namespace = server_namespace_factory()
    env = {
        "CHATQ_DATA_DIR": str(tmp_path / "data"),
        "CHATQ_DATABASE_URL": namespace.database_url,
        "CHATQ_BROKER_URL": namespace.broker_url,
        "CHATQ_API_PORT": str(free_port()),
        "CHATQ_API_PROCESSES": "3",
        "CHATQ_INFERENCE_WORKERS": "0",
        "CHATQ_POSTPROCESS_WORKERS": "0",
        "CHATQ_WEBHOOK_DELIVERY_WORKERS": "0",
        "CHATQ_LOG_LEVEL": "WARNING",
    }
    settings = settings_from_env(env)
    prepare_backend(settings)
    stack = Stack(settings, env)
    stack.start()
    try:
        stack.wait_ready(timeout_s=60)
        yield stack, settings
    finally:
        stack.stop()
        dispose_engine(settings.database_url)


def test_a_key_revoked_with_the_cli_is_refused_by_every_gunicorn_process_1_1_s_later(
    api_processes: tuple[Stack, Settings],
) -> None:
    stack, settings = api_processes
    key = create_api_key(settings.database_url, "shop")
    missing = f"/v1/jobs/{uuid.uuid4()}"

    def probe() -> int:
        # a new connection each time, so the requests spread over the processes
        return httpx.get(stack.base_url + missing, headers=bearer(key), timeout=10).status_code

    # every process has the key cached: 30 requests, right up to the revocation
    assert {probe() for _ in range(30)} == {404}
    run_cli(settings, "keys", "revoke", str(key.id))
    time.sleep(1.1)
    assert {probe() for _ in range(30)} == {401}
