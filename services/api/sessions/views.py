"""HTTP routes of sessions: the stored (anonymised) transcript, and erasure."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select, tuple_

from services.api.auth import current_caller, require_api_key
from services.api.context import api_context
from services.api.problems import Problem, ProblemType
from shared.api_keys import Scope
from shared.db.engine import session_scope
from shared.db.models import ChatSession, Message
from shared.erasure import SessionBusyError, erase_session

blueprint = Blueprint("sessions", __name__, url_prefix="/v1")

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def _page_size() -> int:
    raw = request.args.get("limit", str(DEFAULT_PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise Problem(
            ProblemType.INVALID_PARAMETER, f"limit must be a whole number from 1 to {MAX_PAGE}."
        )
    return int(raw)


def _message_view(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "object": "session.message",
        "job_id": str(message.job_id),
        "role": message.role,
        "content": message.content,
        "created_at": message.created_at.isoformat(),
    }


def _tenant_session(session: Any, external_id: str) -> ChatSession:
    found = session.scalar(
        select(ChatSession).where(
            ChatSession.tenant_id == current_caller().tenant_id,
            ChatSession.external_id == external_id,
        )
    )
    if found is None:
        raise Problem(ProblemType.NOT_FOUND, f"No session {external_id!r}.")
    return found


def _uuid_or_none(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


@blueprint.get("/sessions/<external_id>/messages")
@require_api_key(Scope.JOBS_READ)
def list_messages(external_id: str) -> Response:
    """The transcript as stored: personal data replaced by placeholders, oldest turn first.
    Paginate with ``limit`` and ``after`` (the last message id of the previous page)."""
    limit = _page_size()
    with session_scope(api_context().settings.database_url) as session:
        chat_session = _tenant_session(session, external_id)
        query = select(Message).where(Message.session_id == chat_session.id)
        after = request.args.get("after")
        if after:
            cursor_id = _uuid_or_none(after)
            cursor = session.get(Message, cursor_id) if cursor_id is not None else None
            if cursor is not None and cursor.session_id != chat_session.id:
                cursor = None
            if cursor is None:
                raise Problem(
                    ProblemType.INVALID_PARAMETER,
                    "after must be the id of a message of this session.",
                )
            query = query.where(
                tuple_(Message.created_at, Message.job_id, Message.position)
                > tuple_(cursor.created_at, cursor.job_id, cursor.position)
            )
        rows = session.scalars(
            query.order_by(Message.created_at, Message.job_id, Message.position).limit(limit + 1)
        ).all()
        items = [_message_view(row) for row in rows[:limit]]
    return jsonify(
        {"object": "list", "session_id": external_id, "data": items, "has_more": len(rows) > limit}
    )


@blueprint.delete("/sessions/<external_id>")
@require_api_key(Scope.JOBS_WRITE)
def delete_session(external_id: str) -> Response:
    """Erasure: the transcript, the texts of the session's jobs, and the session."""
    with session_scope(api_context().settings.database_url) as session:
        chat_session = _tenant_session(session, external_id)
        try:
            erase_session(session, chat_session)
        except SessionBusyError as busy:
            raise Problem(ProblemType.SESSION_BUSY, str(busy)) from None
    return Response(status=204)
