"""``GET /v1/jobs`` against a real database (embedded SQLite, and Postgres): the tenant's jobs
newest first, each filter, keyset pages that hold while jobs arrive, tenant isolation, bad
parameters, the scope it needs, and the index its query runs on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import event, insert, select, text

from shared.api_keys import IssuedKey, create_api_key
from shared.db.engine import get_engine, session_scope
from shared.db.models import ApiKey, ChatSession, Job, JobStatus, utcnow
from tests.integration.conftest import TenantApi
from tests.integration.test_api_contract import assert_problem

pytestmark = pytest.mark.integration

T0 = datetime(2025, 11, 28, 9, 0, tzinfo=UTC)  # well before any job the API creates now


def add_job(
    api: TenantApi,
    at: datetime,
    *,
    key: IssuedKey | None = None,
    status: JobStatus = JobStatus.QUEUED,
    session: str | None = None,
) -> str:
    """A job row of ``key``'s tenant created at ``at`` (in the session named ``session``)."""
    key = key or api.key
    with session_scope(api.settings.database_url) as db:
        owner = db.get(ApiKey, key.id)
        assert owner is not None
        chat_session = None
        if session is not None:
            chat_session = db.scalar(
                select(ChatSession).where(
                    ChatSession.tenant_id == owner.tenant_id, ChatSession.external_id == session
                )
            ) or ChatSession(tenant_id=owner.tenant_id, api_key_id=key.id, external_id=session)
        job = Job(
            id=uuid.uuid4(),
            tenant_id=owner.tenant_id,
            api_key_id=key.id,
            session=chat_session,
            status=status,
            query="Where is my order?",
            request_hash="0" * 64,
            created_at=at,
            updated_at=at,
        )
        db.add(job)
    return str(job.id)


def submit(api: TenantApi, **body: Any) -> str:
    response = api.client.post("/v1/jobs", json={"query": "Where is my order?", **body},
                               headers=api.auth())  # fmt: skip
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["id"]


def list_jobs(api: TenantApi, query: str = "", key: IssuedKey | None = None) -> dict[str, Any]:
    response = api.client.get(f"/v1/jobs?{query}", headers=api.auth(key))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


def ids(page: dict[str, Any]) -> list[str]:
    return [job["id"] for job in page["data"]]


def at(moment: datetime) -> str:
    """``moment`` as an RFC 3339 query value."""
    return quote(moment.isoformat(), safe="")


# --- what is listed ---------------------------------------------------------------------------


def test_the_tenants_jobs_come_newest_first_each_as_get_job_shows_it(api: TenantApi) -> None:
    submitted = [submit(api), submit(api, session_id="customer-42"), submit(api, priority=7)]
    page = list_jobs(api)
    assert page["object"] == "list"
    assert ids(page) == submitted[::-1]
    assert page["has_more"] is False and page["next_after"] is None
    for job in page["data"]:
        alone = api.client.get(f"/v1/jobs/{job['id']}", headers=api.auth())
        assert job == alone.get_json()
    assert page["data"][1]["session_id"] == "customer-42"  # the id the client named it by


def test_every_key_of_the_tenant_sees_its_jobs_and_no_other_tenant_does(api: TenantApi) -> None:
    ours = [add_job(api, T0 + timedelta(minutes=i), session="customer-1") for i in range(3)]
    theirs = add_job(api, T0, key=api.stranger, session="customer-1")
    assert ids(list_jobs(api)) == ours[::-1]
    assert ids(list_jobs(api, key=api.colleague)) == ours[::-1]
    assert ids(list_jobs(api, key=api.stranger)) == [theirs]
    # the same session name in the other tenant is another session
    assert ids(list_jobs(api, "session_id=customer-1", key=api.stranger)) == [theirs]
    # a cursor of ours only says where to start: the other tenant still sees only its own
    cursor = list_jobs(api, "limit=1")["next_after"]
    assert ids(list_jobs(api, f"after={cursor}", key=api.stranger)) == [theirs]


def test_jobs_are_filtered_by_status_one_or_several(api: TenantApi) -> None:
    by_status = {
        status: add_job(api, T0 + timedelta(minutes=i), status=status)
        for i, status in enumerate(JobStatus)
    }
    for status, job_id in by_status.items():
        page = list_jobs(api, f"status={status.value}")
        assert ids(page) == [job_id]
        assert page["data"][0]["status"] == status.value
    several = list_jobs(api, "status=queued&status=failed&status=queued")
    assert ids(several) == [by_status[JobStatus.FAILED], by_status[JobStatus.QUEUED]]


def test_jobs_are_filtered_by_the_session_id_clients_gave(api: TenantApi) -> None:
    first = [add_job(api, T0 + timedelta(minutes=i), session="customer-1") for i in (0, 2)]
    add_job(api, T0 + timedelta(minutes=1), session="customer-2")
    add_job(api, T0 + timedelta(minutes=3))  # no session
    page = list_jobs(api, "session_id=customer-1")
    assert ids(page) == first[::-1]
    assert {job["session_id"] for job in page["data"]} == {"customer-1"}
    assert list_jobs(api, "session_id=nobody")["data"] == []  # a filter, not a lookup: no 404


def test_jobs_are_filtered_by_when_they_were_created_bounds_excluded(api: TenantApi) -> None:
    made = [add_job(api, T0 + timedelta(minutes=i)) for i in range(6)]
    after, before = T0 + timedelta(minutes=1), T0 + timedelta(minutes=4)
    assert ids(list_jobs(api, f"created_after={at(after)}")) == made[:1:-1]
    assert ids(list_jobs(api, f"created_before={at(before)}")) == made[3::-1]
    window = f"created_after={at(after)}&created_before={at(before)}"
    assert ids(list_jobs(api, window)) == [made[3], made[2]]
    # the same moments in another offset, and with Z
    east = after.astimezone(timezone(timedelta(hours=2)))
    assert ids(list_jobs(api, f"created_after={at(east)}")) == made[:1:-1]
    assert ids(list_jobs(api, "created_before=2025-11-28T09:00:00.000001Z")) == [made[0]]


def test_filters_combine(api: TenantApi) -> None:
    wanted = add_job(api, T0 + timedelta(minutes=2), status=JobStatus.COMPLETED, session="c-1")
    add_job(api, T0 + timedelta(minutes=3), status=JobStatus.FAILED, session="c-1")
    add_job(api, T0 + timedelta(minutes=4), status=JobStatus.COMPLETED, session="c-2")
    add_job(api, T0, status=JobStatus.COMPLETED, session="c-1")
    query = f"status=completed&session_id=c-1&created_after={at(T0)}"
    assert ids(list_jobs(api, query)) == [wanted]


# --- pages ------------------------------------------------------------------------------------


def test_pages_have_no_duplicates_or_gaps_while_new_jobs_arrive(api: TenantApi) -> None:
    # ten jobs a minute apart, then thirteen created in the same microsecond: pages must cut
    # through the tie by id
    spaced = [add_job(api, T0 + timedelta(minutes=i)) for i in range(10)]
    tied = [add_job(api, T0 + timedelta(hours=1)) for _ in range(13)]
    expected = sorted(tied, key=uuid.UUID, reverse=True) + spaced[::-1]
    seen: list[str] = []
    arrived: list[str] = []
    cursor = None
    while True:
        page = list_jobs(api, "limit=4" + (f"&after={cursor}" if cursor else ""))
        seen += ids(page)
        # jobs arrive between page reads
        arrived += [submit(api), submit(api, session_id="customer-1")]
        if not page["has_more"]:
            assert page["next_after"] is None
            break
        assert len(page["data"]) == 4
        cursor = page["next_after"]
    assert seen == expected  # every job once, in order
    newest = list_jobs(api, "limit=100")
    assert set(ids(newest)) == set(expected) | set(arrived)


def test_a_filtered_listing_pages_the_same_way(api: TenantApi) -> None:
    failed = [
        add_job(api, T0 + timedelta(minutes=i), status=JobStatus.FAILED) for i in range(0, 10, 2)
    ]
    for i in range(1, 10, 2):
        add_job(api, T0 + timedelta(minutes=i), status=JobStatus.COMPLETED)
    first = list_jobs(api, "status=failed&limit=3")
    second = list_jobs(api, f"status=failed&limit=3&after={first['next_after']}")
    assert ids(first) + ids(second) == failed[::-1]
    assert second["has_more"] is False


def test_a_page_holds_twenty_jobs_unless_asked_for_up_to_a_hundred(api: TenantApi) -> None:
    made = [add_job(api, T0 + timedelta(seconds=i)) for i in range(25)]
    default = list_jobs(api)
    assert ids(default) == made[:4:-1] and default["has_more"] is True
    assert ids(list_jobs(api, "limit=100")) == made[::-1]
    assert ids(list_jobs(api, "limit=1")) == [made[-1]]
    assert list_jobs(api, "limit=25")["has_more"] is False


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ("status=done", "status.0"),
        ("status=", "status.0"),
        ("status=queued,failed", "status.0"),  # repeat the parameter instead
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=5&limit=6", "limit"),
        ("session_id=", "session_id"),
        ("session_id=not%20an%20id", "session_id"),
        ("session_id=" + "s" * 129, "session_id"),
        ("created_after=yesterday", "created_after"),
        ("created_after=2026-11-28", "created_after"),
        ("created_after=2026-11-28T09:00:00", "created_after"),  # no offset
        ("created_after=1764320400", "created_after"),
        ("created_before=2026-11-28T25:00:00Z", "created_before"),
        ("created_before=0001-01-01T00:00:00%2B01:00", "created_before"),
        ("after=", "after"),
        ("after=not-a-cursor", "after"),
        ("after=" + "-" * 32, "after"),
        ("colour=red", "colour"),
    ],
)
def test_a_bad_parameter_is_a_422_naming_it(api: TenantApi, query: str, loc: str) -> None:
    response = api.client.get(f"/v1/jobs?{query}", headers=api.auth())
    problem = assert_problem(response, 422, "validation-error")
    assert [error["loc"] for error in problem["errors"]] == [loc]


def test_a_cursor_that_was_changed_is_refused(api: TenantApi) -> None:
    for i in range(3):
        add_job(api, T0 + timedelta(minutes=i))
    cursor = list_jobs(api, "limit=1")["next_after"]
    for broken in (cursor[:-1], cursor + "A", cursor.replace(cursor[5], "!")):
        response = api.client.get(f"/v1/jobs?after={broken}", headers=api.auth())
        problem = assert_problem(response, 422, "validation-error")
        assert problem["errors"][0]["loc"] == "after"


def test_listing_needs_the_jobs_read_scope(api: TenantApi) -> None:
    add_job(api, T0)
    url = api.settings.database_url
    for scopes in (["jobs:write"], ["knowledge:write"]):
        narrow = create_api_key(url, "narrow", tenant=api.key.tenant, scopes=scopes)
        response = api.client.get("/v1/jobs", headers=api.auth(narrow))
        problem = assert_problem(response, 403, "insufficient-scope")
        assert problem["required_scope"] == "jobs:read"
    reader = create_api_key(url, "reader", tenant=api.key.tenant, scopes=["jobs:read"])
    assert len(list_jobs(api, key=reader)["data"]) == 1
    assert_problem(api.client.get("/v1/jobs"), 401, "unauthorized")


# --- the index --------------------------------------------------------------------------------


@contextmanager
def statements_on_jobs(database_url: str) -> Iterator[list[tuple[str, Any]]]:
    """The SQL (and its parameters) that the API sends about jobs while the block runs."""
    caught: list[tuple[str, Any]] = []

    def catch(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM jobs" in statement:
            caught.append((statement, parameters))

    engine = get_engine(database_url)
    event.listen(engine, "before_cursor_execute", catch)
    try:
        yield caught
    finally:
        event.remove(engine, "before_cursor_execute", catch)


def test_a_page_is_read_through_the_tenants_created_at_index(api: TenantApi) -> None:
    url = api.settings.database_url
    tenants = {}
    with session_scope(url) as db:
        for key in (api.key, api.stranger):
            owner = db.get(ApiKey, key.id)
            assert owner is not None
            tenants[key.id] = owner.tenant_id
    # enough rows, in two tenants, that the planner prefers an index to reading the table
    rows = [
        {
            "id": uuid.uuid4(),
            "tenant_id": tenants[key.id],
            "api_key_id": key.id,
            "status": JobStatus.COMPLETED,
            "query": "q",
            "request_hash": "0" * 64,
            "created_at": T0 + timedelta(seconds=i),
            "updated_at": T0,
        }
        for i in range(3000)
        for key in (api.key, api.stranger)
    ]
    with session_scope(url) as db:
        db.execute(insert(Job), rows)
    postgres = url.startswith("postgresql")
    with get_engine(url).begin() as connection:
        connection.execute(text("ANALYZE jobs" if postgres else "ANALYZE"))
    cursor = list_jobs(api, "limit=20")["next_after"]
    with statements_on_jobs(url) as caught:
        page = list_jobs(api, f"limit=20&after={cursor}")
    assert len(page["data"]) == 20
    [(statement, parameters)] = caught
    explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
    with get_engine(url).connect() as connection:
        plan = "\n".join(
            str(row[-1]) for row in connection.exec_driver_sql(explain + statement, parameters)
        )
    assert "ix_jobs_tenant_id_created_at" in plan, plan
    if postgres:
        assert "Seq Scan on jobs" not in plan, plan
    else:
        assert "SCAN jobs" not in plan, plan  # SQLite's word for reading the whole table


def test_new_jobs_read_through_the_api_carry_their_creation_time(api: TenantApi) -> None:
    before = utcnow()
    job_id = submit(api)
    page = list_jobs(api, f"created_after={at(before - timedelta(microseconds=1))}")
    assert ids(page) == [job_id]
    assert list_jobs(api, f"created_after={at(utcnow())}")["data"] == []
