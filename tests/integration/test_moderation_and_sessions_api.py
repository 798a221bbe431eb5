"""The moderation-list and session endpoints against a real database (embedded, and Postgres):
tenant isolation, bad input that stores nothing, the anonymised transcript, and erasure."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from services.postprocess.results import record_outcome
from shared.db.engine import session_scope
from shared.db.models import ChatSession, Job, JobStatus, Message, ModerationList
from tests.integration.conftest import TenantApi
from tests.integration.factories import completed_outcome, make_job
from tests.integration.test_api_contract import assert_problem

pytestmark = pytest.mark.integration


BRANDS = {"category": "custom", "terms": ["CompetitorMart", "竞品商城"], "allow": ["Mart Street"]}


def test_a_moderation_list_is_created_replaced_listed_and_deleted(api: TenantApi) -> None:
    created = api.put("/v1/moderation/lists/competitors", BRANDS)
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.get_json()["terms"] == ["CompetitorMart", "竞品商城"]
    version = api.version()
    replaced = api.put("/v1/moderation/lists/competitors", {**BRANDS, "terms": ["OtherShop"]})
    assert replaced.status_code == 200
    assert api.version() > version  # workers rebuild the tenant's moderator
    listed = api.client.get("/v1/moderation/lists", headers=api.auth()).get_json()
    assert [item["name"] for item in listed["data"]] == ["competitors"]
    assert (
        api.client.delete("/v1/moderation/lists/competitors", headers=api.auth()).status_code == 204
    )
    assert api.rows(ModerationList) == 0


def test_another_tenant_never_sees_a_list(api: TenantApi) -> None:
    assert api.put("/v1/moderation/lists/competitors", BRANDS).status_code == 201
    path = "/v1/moderation/lists/competitors"
    assert_problem(api.client.get(path, headers=api.auth(api.stranger)), 404, "not-found")
    assert_problem(api.client.delete(path, headers=api.auth(api.stranger)), 404, "not-found")
    listed = api.client.get("/v1/moderation/lists", headers=api.auth(api.stranger)).get_json()
    assert listed["data"] == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/moderation/lists/competitors", {"category": "gossip", "terms": ["x"]}),
        ("/v1/moderation/lists/competitors", {"category": "custom", "terms": []}),
        ("/v1/moderation/lists/competitors", {"category": "custom", "terms": ["  "]}),
        ("/v1/moderation/lists/competitors", {"category": "custom", "terms": ["x" * 201]}),
        ("/v1/moderation/lists/competitors", {"category": "custom", "terms": ["x"], "extra": 1}),
        ("/v1/moderation/lists/bad%20name", {"category": "custom", "terms": ["x"]}),
    ],
)
def test_a_bad_list_is_refused_and_nothing_is_stored(api: TenantApi, path: str, body: Any) -> None:
    assert api.put(path, body).status_code == 422
    assert api.rows(ModerationList) == 0


def test_tenant_settings_take_moderation_actions_and_pii_patterns(api: TenantApi) -> None:
    good = api.put(
        "/v1/tenant/settings",
        {
            "moderation": {"actions": {"profanity": "mask"}, "safe_answer": {"en": "Be nice."}},
            "pii_patterns": [{"name": "customer_no", "regex": r"CU-\d{6}"}],
        },
    )
    assert good.status_code == 200, good.get_data(as_text=True)
    for bad in (
        {"moderation": {"actions": {"profanity": "delete"}}},
        {"moderation": {"actions": {"gossip": "block"}}},
        {"pii_patterns": [{"name": "x", "regex": "("}]},
        {"pii_patterns": [{"name": "1x", "regex": "a"}]},
    ):
        assert_problem(api.put("/v1/tenant/settings", bad), 422, "validation-error")


def finished_session_job(api: TenantApi, external_id: str, query: str, answer: str) -> Job:
    url = api.settings.database_url
    with session_scope(url) as session:
        existing = session.scalar(select(ChatSession).where(ChatSession.external_id == external_id))
        session_id = existing.id if existing else None
    job = (
        make_job(url, api.key.id, session_id=session_id, query=query)
        if session_id
        else make_job(url, api.key.id, session_external_id=external_id, query=query)
    )
    with session_scope(url) as session:
        session.get(Job, job.id).status = JobStatus.IN_PROGRESS
    record_outcome(api.settings, completed_outcome(job.id, answer))
    return job


def test_the_transcript_is_served_anonymised_in_pages(api: TenantApi) -> None:
    finished_session_job(api, "c-1", "My email is ann@example.com", "Thanks!")
    finished_session_job(api, "c-1", "And my phone +86 138 1234 5678", "Noted, ann@example.com.")

    first = api.client.get("/v1/sessions/c-1/messages?limit=3", headers=api.auth())
    assert first.status_code == 200
    page = first.get_json()
    assert page["has_more"] is True
    assert [m["content"] for m in page["data"]] == [
        "My email is <EMAIL_1>",
        "Thanks!",
        "And my phone <PHONE_1>",
    ]
    rest = api.client.get(
        f"/v1/sessions/c-1/messages?limit=3&after={page['data'][-1]['id']}", headers=api.auth()
    ).get_json()
    assert [m["content"] for m in rest["data"]] == ["Noted, <EMAIL_1>."]
    assert rest["has_more"] is False

    assert_problem(
        api.client.get("/v1/sessions/c-1/messages", headers=api.auth(api.stranger)),
        404, "not-found",
    )  # fmt: skip
    assert_problem(
        api.client.get("/v1/sessions/c-1/messages?limit=0", headers=api.auth()),
        400, "invalid-parameter",
    )  # fmt: skip
    assert_problem(
        api.client.get("/v1/sessions/c-1/messages?after=nope", headers=api.auth()),
        400, "invalid-parameter",
    )  # fmt: skip


def test_deleting_a_session_erases_its_transcript_and_job_texts(api: TenantApi) -> None:
    job = finished_session_job(api, "c-2", "Call me on 13812345678", "Sure.")
    assert_problem(
        api.client.delete("/v1/sessions/c-2", headers=api.auth(api.stranger)), 404, "not-found"
    )
    assert api.client.delete("/v1/sessions/c-2", headers=api.auth()).status_code == 204
    assert api.rows(Message) == 0 and api.rows(ChatSession) == 0
    polled = api.client.get(f"/v1/jobs/{job.id}", headers=api.auth()).get_json()
    assert (polled["query"], polled["response"], polled["status"]) == ("", None, "completed")
    assert_problem(api.client.delete("/v1/sessions/c-2", headers=api.auth()), 404, "not-found")


def test_a_session_with_a_running_job_is_not_erased(api: TenantApi) -> None:
    make_job(
        api.settings.database_url, api.key.id, session_external_id="c-3",
        status=JobStatus.IN_PROGRESS,
    )  # fmt: skip
    assert_problem(api.client.delete("/v1/sessions/c-3", headers=api.auth()), 409, "session-busy")
    assert api.rows(ChatSession) == 1
