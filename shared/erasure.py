"""Erasing what customers wrote: a session on request (``DELETE /v1/sessions/{id}``) and, by age,
whatever the retention settings no longer allow to keep (``chatq purge``).

Erased jobs keep their row (status, route, timings, usage: what operators count) but lose every
text: question, history, answer, and the texts inside their stored webhook payloads.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shared.db.models import ChatSession, Feedback, Job, Message, WebhookDelivery, utcnow


class SessionBusyError(Exception):
    """The session still has jobs that have not finished."""


def erase_job_texts(session: Session, job_ids: Collection[uuid.UUID], now: datetime) -> int:
    """Blank the texts of ``job_ids`` and of their stored webhook payloads; returns the count."""
    if not job_ids:
        return 0
    ids = list(job_ids)
    session.execute(
        update(Job)
        .where(Job.id.in_(ids))
        .values(query="", history=[], response=None, redacted_at=now)
        .execution_options(synchronize_session=False)
    )
    for delivery in session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id.in_(ids))):
        delivery.payload = _without_texts(delivery.payload)
    # feedback quotes the answer (a correction, a comment) and judges texts that are gone
    session.execute(delete(Feedback).where(Feedback.job_id.in_(ids)))
    return len(ids)


def _without_texts(payload: dict[str, Any]) -> dict[str, Any]:
    data = payload.get("data") or {}
    return {**payload, "data": {**data, "query": "", "response": None}}


def erase_session(session: Session, chat_session: ChatSession) -> int:
    """Erase a conversation: its transcript, its jobs' texts, and the session itself. Refused
    while one of its jobs is still queued or running (its answer would arrive afterwards)."""
    jobs = session.execute(
        select(Job.id, Job.status).where(Job.session_id == chat_session.id)
    ).all()
    if any(not status.is_terminal for _, status in jobs):
        raise SessionBusyError(
            "the session has jobs that have not finished; cancel them or wait for them first"
        )
    erased = erase_job_texts(session, [job_id for job_id, _ in jobs], utcnow())
    session.execute(delete(Message).where(Message.session_id == chat_session.id))
    session.delete(chat_session)
    return erased
