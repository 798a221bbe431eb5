"""Post-processing moderates answers and keeps only anonymised texts: the transcript, stored
webhook payloads, and (after the retention period) the job itself; `chatq purge` applies the
retention settings. On a real database (embedded, and Postgres)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from chatq.webhook_receiver import WebhookReceiver
from services.postprocess.purge import purge_once
from services.postprocess.results import record_outcome
from services.postprocess.webhooks import attempt_delivery
from shared.api_keys import IssuedKey, create_api_key
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import ChatSession, DeliveryStatus, Job, Message, WebhookDelivery, utcnow
from shared.knowledge import store
from shared.knowledge.schemas import TenantSettings
from shared.moderation import tenant_lists
from shared.moderation.tenant_lists import ModerationListIn
from shared.webhook_client import WebhookClient
from tests.integration.factories import completed_outcome, make_job

pytestmark = pytest.mark.integration

PHONE = "13812345678"
EMAIL = "li.wei@example.com"


def configure(settings: Settings, key: IssuedKey, **tenant_settings: object) -> None:
    with session_scope(settings.database_url) as session:
        tenant_id = _tenant_of(session, key)
        store.put_settings(session, tenant_id, TenantSettings.model_validate(tenant_settings))


def _tenant_of(session: object, key: IssuedKey) -> uuid.UUID:
    from shared.db.models import ApiKey

    row = session.get(ApiKey, key.id)  # type: ignore[attr-defined]
    assert row is not None
    return row.tenant_id


def stored_job(settings: Settings, job_id: uuid.UUID) -> Job:
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def transcript(settings: Settings, job_id: uuid.UUID) -> list[str]:
    with session_scope(settings.database_url) as session:
        return list(
            session.scalars(
                select(Message.content).where(Message.job_id == job_id).order_by(Message.position)
            )
        )


def test_an_answer_moderation_blocks_becomes_the_safe_answer(backend_settings: Settings) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    configure(
        backend_settings, key,
        moderation={"actions": {"abuse": "block"}, "safe_answer": "Let us keep it friendly."},
    )  # fmt: skip
    job = make_job(url, key.id, query="How do I return shoes?")
    record_outcome(backend_settings, completed_outcome(job.id, "Go kill yourself, idiot."))

    stored = stored_job(backend_settings, job.id)
    assert stored.response == "Let us keep it friendly."
    assert stored.route == "moderation"
    assert stored.moderation is not None
    assert stored.moderation["flagged"] is True
    assert stored.moderation["action"] == "block"
    assert stored.moderation["stage"] == "output"
    assert "kill yourself" not in " ".join(transcript(backend_settings, job.id))


def test_a_tenants_own_list_masks_words_in_answers(backend_settings: Settings) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    configure(backend_settings, key, moderation={"actions": {"custom": "mask"}})
    with session_scope(url) as session:
        tenant_lists.put_list(
            session,
            _tenant_of(session, key),
            "competitors",
            ModerationListIn(category="custom", terms=["CompetitorMart"]),
        )
    job = make_job(url, key.id)
    record_outcome(backend_settings, completed_outcome(job.id, "CompetitorMart is cheaper."))

    stored = stored_job(backend_settings, job.id)
    assert stored.response == "*** is cheaper."
    assert stored.route == "llm"
    assert stored.moderation == {
        "flagged": True,
        "categories": ["custom"],
        "action": "mask",
        "stage": "output",
    }


def test_a_clean_answer_says_so(backend_settings: Settings) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    job = make_job(url, key.id)
    record_outcome(backend_settings, completed_outcome(job.id, "It ships tomorrow."))
    stored = stored_job(backend_settings, job.id)
    assert stored.response == "It ships tomorrow."
    assert stored.moderation == {
        "flagged": False,
        "categories": [],
        "action": None,
        "stage": "output",
    }


def test_the_transcript_keeps_placeholders_consistent_across_turns(
    backend_settings: Settings,
) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    first = make_job(
        url, key.id, session_external_id="c-1", query=f"我的手机是{PHONE}，邮箱 {EMAIL}",
        webhook_url="https://example.com/hook",
    )  # fmt: skip
    record_outcome(backend_settings, completed_outcome(first.id, f"好的，我们会打 {PHONE}。"))
    second = make_job(
        url, key.id, session_id=stored_job(backend_settings, first.id).session_id,
        query="Call +49 30 12345678 instead, not 138 1234 5678.",
    )  # fmt: skip
    record_outcome(backend_settings, completed_outcome(second.id, "Noted."))

    turns = transcript(backend_settings, first.id) + transcript(backend_settings, second.id)
    text = "\n".join(turns)
    assert PHONE not in text and EMAIL not in text and "12345678" not in text
    assert turns[0] == "我的手机是<PHONE_1>，邮箱 <EMAIL_1>"
    assert turns[1] == "好的，我们会打 <PHONE_1>。"
    # the same mobile written differently is the same placeholder; a new number a new one
    assert turns[2] == "Call <PHONE_2> instead, not <PHONE_1>."
    with session_scope(url) as session:
        (payload,) = session.scalars(select(WebhookDelivery.payload)).all()
        chat_session = session.scalars(select(ChatSession)).one()
        placeholders = dict(chat_session.pii_placeholders or {})
    assert payload["data"]["query"] == "我的手机是<PHONE_1>，邮箱 <EMAIL_1>"
    assert payload["data"]["response"] == "好的，我们会打 <PHONE_1>。"
    # the map holds keyed hashes, never the numbers: its keys are hex digests (which may hold
    # any run of digits by chance, so they are checked by their form), its values placeholders
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in placeholders)
    assert all(re.fullmatch(r"<[A-Z]+_\d+>", name) for name in placeholders.values())
    # the job itself keeps the clear texts until the retention period ends
    assert stored_job(backend_settings, first.id).query == f"我的手机是{PHONE}，邮箱 {EMAIL}"


def test_purge_anonymises_jobs_past_retention_and_deletes_old_transcripts(
    backend_settings: Settings,
) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    job = make_job(
        url, key.id, session_external_id="c-2", query=f"Text me on {PHONE}",
        history=[{"role": "user", "content": f"mail {EMAIL}"}],
    )  # fmt: skip
    record_outcome(backend_settings, completed_outcome(job.id, f"We will text {PHONE}."))
    settings = backend_settings.model_copy(
        update={"result_retention_s": 3600, "transcript_retention_days": 30}
    )

    assert purge_once(settings).anonymised_jobs == 0  # still within the retention period
    counts = purge_once(settings, now=utcnow() + timedelta(hours=2))
    assert counts.anonymised_jobs == 1
    anonymised = stored_job(backend_settings, job.id)
    assert anonymised.query == "Text me on <PHONE_1>"
    assert anonymised.response == "We will text <PHONE_1>."
    assert anonymised.history == [{"role": "user", "content": "mail <EMAIL_1>"}]
    assert anonymised.redacted_at is not None
    assert purge_once(settings, now=utcnow() + timedelta(hours=3)).anonymised_jobs == 0

    counts = purge_once(settings, now=utcnow() + timedelta(days=31))
    assert (counts.erased_jobs, counts.deleted_messages, counts.deleted_sessions) == (1, 2, 1)
    erased = stored_job(backend_settings, job.id)
    assert (erased.query, erased.response, erased.history) == ("", None, [])
    assert erased.status.value == "completed"  # the row stays for the operators' counts
    assert transcript(backend_settings, job.id) == []


def test_a_webhook_carries_clear_texts_within_retention_and_anonymised_ones_after(
    backend_settings: Settings,
) -> None:
    settings = backend_settings.model_copy(
        update={"webhook_allow_private": True, "result_retention_s": 60}
    )
    url = settings.database_url
    with WebhookReceiver() as receiver:
        key = create_api_key(url, "shop")
        receiver.secrets.append(key.webhook_secret)
        job = make_job(url, key.id, query=f"Call {PHONE}", webhook_url=receiver.url)
        (first,) = record_outcome(settings, completed_outcome(job.id, f"We call {PHONE}."))
        attempt_delivery(settings, first, WebhookClient())
        assert purge_once(settings, now=utcnow() + timedelta(minutes=5)).anonymised_jobs == 1
        with session_scope(url) as session:
            session.get(WebhookDelivery, first).status = DeliveryStatus.PENDING  # a re-send
        attempt_delivery(settings, first, WebhookClient())
        clear, anonymised = receiver.wait_for(2, timeout_s=10)

    assert clear.verified and anonymised.verified
    assert clear.payload["data"]["query"] == f"Call {PHONE}"
    assert clear.payload["data"]["response"] == f"We call {PHONE}."
    assert anonymised.payload["data"]["query"] == "Call <PHONE_1>"
    assert anonymised.payload["data"]["response"] == "We call <PHONE_1>."
