"""The work behind the knowledge endpoints: store through ``shared.knowledge.store`` in one
transaction per request, and shape rows for the API."""

from __future__ import annotations

from typing import Any

from flask import request

from services.api.problems import Problem, ProblemType
from shared.db.models import FaqEntry, KbDocument
from shared.knowledge.schemas import is_valid_external_id

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def check_external_id(raw: str) -> str:
    if not is_valid_external_id(raw):
        raise Problem(
            ProblemType.INVALID_ID,
            f"Ids are 1-128 characters of A-Z a-z 0-9 . _ - (got {raw[:140]!r}).",
        )
    return raw


def page_arguments() -> tuple[int, str | None]:
    """``limit`` and ``after`` (the last id of the previous page) from the query string."""
    raw_limit = request.args.get("limit", str(DEFAULT_PAGE_SIZE))
    try:
        limit = int(raw_limit)
    except ValueError:
        limit = -1
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise Problem(
            ProblemType.INVALID_PARAMETER,
            f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}.",
        )
    after = request.args.get("after") or None
    if after is not None:
        check_external_id(after)
    return limit, after


def page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "has_more": len(items) == limit,
        "next_after": items[-1]["id"] if len(items) == limit else None,
    }


def document_view(
    document: KbDocument, chunks: int | None, *, with_text: bool = False
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": document.external_id,
        "object": "knowledge.document",
        "title": document.title,
        "lang": document.lang,
        "chars": len(document.text),
        "chunks": chunks,
        "created_at": document.created_at.isoformat(),
        "updated_at": document.updated_at.isoformat(),
    }
    if with_text:
        view["text"] = document.text
    return view


def faq_view(entry: FaqEntry) -> dict[str, Any]:
    return {
        "id": entry.external_id,
        "object": "knowledge.faq",
        "question": entry.question,
        "answer": entry.answer,
        "alternatives": entry.alternatives,
        "lang": entry.lang,
        "created_at": entry.created_at.isoformat(),
        "updated_at": entry.updated_at.isoformat(),
    }


def not_found(kind: str, external_id: str) -> Problem:
    return Problem(ProblemType.NOT_FOUND, f"No {kind} {external_id!r}.")
