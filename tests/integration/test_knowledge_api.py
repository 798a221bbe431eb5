"""The knowledge, intent and tenant endpoints against a real database (embedded, and Postgres):
201/200/204 as the contract says, tenant isolation, and bad input that stores nothing."""

from __future__ import annotations

from typing import Any

import pytest

from shared.db.models import FaqEntry, IntentDefinitionRow, KbChunk, KbDocument
from tests.integration.conftest import TenantApi
from tests.integration.test_api_contract import assert_problem

pytestmark = pytest.mark.integration

DOCUMENT = {
    "title": "Shipping",
    "text": (
        "# Shipping\n\n## Times\nOrders before 3 pm ship the same day.\n\n"
        "## Fees\nFree over 99 yuan."
    ),
}


def test_a_document_is_created_then_replaced_and_chunked(api: TenantApi) -> None:
    created = api.put("/v1/knowledge/documents/shipping", DOCUMENT)
    assert created.status_code == 201, created.get_data(as_text=True)
    body = created.get_json()
    assert body["id"] == "shipping" and body["lang"] == "en"
    assert body["chunks"] >= 1
    version = api.version()

    replaced = api.put("/v1/knowledge/documents/shipping", {**DOCUMENT, "text": "Ships in 2 days."})
    assert replaced.status_code == 200
    assert replaced.get_json()["chunks"] == 1
    assert api.version() > version  # workers re-index, cached answers are gone
    assert api.rows(KbChunk) == 1

    shown = api.client.get("/v1/knowledge/documents/shipping", headers=api.auth())
    assert shown.get_json()["text"] == "Ships in 2 days."


def test_keys_of_one_tenant_share_knowledge_and_other_tenants_see_none(
    api: TenantApi,
) -> None:
    assert api.put("/v1/knowledge/documents/shipping", DOCUMENT).status_code == 201
    assert (
        api.put("/v1/knowledge/faq/hours", {"question": "Hours?", "answer": "9-21"}).status_code
        == 201
    )
    seen = api.client.get("/v1/knowledge/documents/shipping", headers=api.auth(api.colleague))
    assert seen.status_code == 200
    for path in ("/v1/knowledge/documents/shipping", "/v1/knowledge/faq/hours"):
        assert_problem(api.client.get(path, headers=api.auth(api.stranger)), 404, "not-found")
        assert_problem(api.client.delete(path, headers=api.auth(api.stranger)), 404, "not-found")
    listed = api.client.get("/v1/knowledge/documents", headers=api.auth(api.stranger))
    assert listed.get_json()["data"] == []
    # the stranger's own document of the same id is a different one
    assert api.put("/v1/knowledge/documents/shipping", DOCUMENT, api.stranger).status_code == 201


def test_faq_entries_list_in_pages_and_delete(api: TenantApi) -> None:
    for n in range(5):
        body = {"question": f"Question {n}?", "answer": f"Answer {n}.", "alternatives": [f"Q{n}"]}
        assert api.put(f"/v1/knowledge/faq/q{n}", body).status_code == 201
    first = api.client.get("/v1/knowledge/faq?limit=2", headers=api.auth()).get_json()
    assert [e["id"] for e in first["data"]] == ["q0", "q1"] and first["has_more"]
    second = api.client.get(
        f"/v1/knowledge/faq?limit=2&after={first['next_after']}", headers=api.auth()
    ).get_json()
    assert [e["id"] for e in second["data"]] == ["q2", "q3"]
    assert api.client.delete("/v1/knowledge/faq/q0", headers=api.auth()).status_code == 204
    assert_problem(api.client.get("/v1/knowledge/faq/q0", headers=api.auth()), 404, "not-found")


BAD_DOCUMENTS = [
    pytest.param("shipping", {"title": "T", "text": ""}, 422, "validation-error", id="empty-text"),
    pytest.param("shipping", {"title": "T", "text": " \n "}, 422, "validation-error", id="blank"),
    pytest.param("shipping", {"title": "", "text": "x"}, 422, "validation-error", id="no-title"),
    pytest.param("shipping", {"text": "x"}, 422, "validation-error", id="missing-title"),
    pytest.param(
        "shipping", {"title": "T", "text": "x", "lang": "fr"}, 422, "validation-error", id="lang"
    ),
    pytest.param(
        "shipping", {"title": "T", "text": "x" * 200_001}, 422, "validation-error", id="too-long"
    ),
    pytest.param("bad%20id", {"title": "T", "text": "x"}, 422, "invalid-id", id="bad-id"),
    pytest.param("x" * 129, {"title": "T", "text": "x"}, 422, "invalid-id", id="long-id"),
]


@pytest.mark.parametrize(("doc_id", "body", "status", "slug"), BAD_DOCUMENTS)
def test_bad_documents_are_refused_and_store_nothing(
    api: TenantApi, doc_id: str, body: dict[str, Any], status: int, slug: str
) -> None:
    assert_problem(api.put(f"/v1/knowledge/documents/{doc_id}", body), status, slug)
    assert api.rows(KbDocument) == 0 and api.rows(KbChunk) == 0


def test_a_ten_megabyte_document_is_refused_before_it_is_read(api: TenantApi) -> None:
    body = {"title": "Huge", "text": "word " * (2 * 1024 * 1024)}
    assert_problem(api.put("/v1/knowledge/documents/huge", body), 413, "payload-too-large")
    assert api.rows(KbDocument) == 0


def test_bad_faq_and_intents_are_refused_and_store_nothing(api: TenantApi) -> None:
    assert_problem(api.put("/v1/knowledge/faq/x", {"question": "Q?"}), 422, "validation-error")
    assert_problem(
        api.put("/v1/knowledge/faq/x", {"question": "Q?", "answer": "A", "alternatives": [""]}),
        422,
        "validation-error",
    )
    bad_intents = [
        {"handler": {"type": "template", "answer": "hi"}},  # nothing to recognise it by
        {"examples": ["hi"], "handler": {"type": "teleport"}},
        {
            "examples": ["hi"],
            "patterns": ["(unclosed"],
            "handler": {"type": "template", "answer": "x"},
        },
        {
            "examples": ["where is my order"],
            "slots": {"order_id": {"pattern": r"\d+", "required": True}},  # no `ask`
            "handler": {"type": "template", "answer": "x"},
        },
    ]
    for body in bad_intents:
        assert_problem(api.put("/v1/intents/order_status", body), 422, "validation-error")
    assert_problem(
        api.put(
            "/v1/intents/bad name",
            {"examples": ["x"], "handler": {"type": "template", "answer": "x"}},
        ),
        422,
        "invalid-id",
    )
    assert api.rows(FaqEntry) == 0 and api.rows(IntentDefinitionRow) == 0


def test_intents_and_tenant_settings_round_trip(api: TenantApi) -> None:
    intent = {
        "examples": ["When are you open?"],
        "handler": {"type": "template", "answer": {"en": "9 to 21", "zh": "9点到21点"}},
    }
    assert api.put("/v1/intents/hours", intent).status_code == 201
    assert api.put("/v1/intents/hours", intent).status_code == 200
    listed = api.client.get("/v1/intents", headers=api.auth()).get_json()["data"]
    assert [i["name"] for i in listed] == ["hours"]
    assert api.client.get("/v1/intents", headers=api.auth(api.stranger)).get_json()["data"] == []

    settings = {"fallback_answer": {"en": "Ask us at help@shop.example"}, "llm_fallback": True}
    updated = api.put("/v1/tenant/settings", settings)
    assert updated.status_code == 200
    assert updated.get_json()["settings"]["llm_fallback"] is True
    assert api.client.get("/v1/tenant", headers=api.auth(api.colleague)).get_json()["intents"] == 1
    assert api.client.delete("/v1/intents/hours", headers=api.auth()).status_code == 204


def test_a_rotated_key_sees_the_tenants_jobs_and_continues_its_sessions(
    api: TenantApi,
) -> None:
    body = {"query": "Where is my order?", "session_id": "customer-7"}
    first = api.client.post(
        "/v1/jobs", json=body, headers={**api.auth(), "Idempotency-Key": "order-7"}
    )
    assert first.status_code == 202, first.get_data(as_text=True)
    job_id = first.get_json()["id"]
    # the new key of the same tenant: same job, same idempotency scope, same session
    seen = api.client.get(f"/v1/jobs/{job_id}", headers=api.auth(api.colleague))
    assert seen.status_code == 200 and seen.get_json()["session_id"] == "customer-7"
    replay = api.client.post(
        "/v1/jobs", json=body, headers={**api.auth(api.colleague), "Idempotency-Key": "order-7"}
    )
    assert replay.status_code == 202 and replay.get_json()["id"] == job_id
    assert replay.headers["Idempotent-Replayed"] == "true"
    # another tenant sees nothing, and its own Idempotency-Key of the same name is its own
    assert_problem(
        api.client.get(f"/v1/jobs/{job_id}", headers=api.auth(api.stranger)), 404, "not-found"
    )
    other = api.client.post(
        "/v1/jobs", json=body, headers={**api.auth(api.stranger), "Idempotency-Key": "order-7"}
    )
    assert other.status_code == 202 and other.get_json()["id"] != job_id
