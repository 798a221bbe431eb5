"""HTTP routes of a tenant's own moderation lists (``PUT /v1/moderation/lists/{name}``).

What moderation does per category, and the safe answer, are tenant settings
(``PUT /v1/tenant/settings``, ``moderation``).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from services.api.auth import current_caller, require_api_key
from services.api.context import api_context
from services.api.problems import Problem, ProblemType
from services.api.request_body import parse_json_body
from shared.api_keys import Scope
from shared.db.engine import session_scope
from shared.moderation import tenant_lists
from shared.moderation.tenant_lists import LIST_NAME_PATTERN, ModerationListIn

blueprint = Blueprint("moderation", __name__, url_prefix="/v1/moderation")


def _check_name(name: str) -> str:
    if not LIST_NAME_PATTERN.fullmatch(name):
        raise Problem(
            ProblemType.INVALID_ID, "List names are 1-128 characters of A-Z a-z 0-9 . _ -."
        )
    return name


@blueprint.put("/lists/<name>")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def put_list(name: str) -> Response:
    _check_name(name)
    body = parse_json_body(ModerationListIn)
    with session_scope(api_context().settings.database_url) as session:
        row, created = tenant_lists.put_list(session, current_caller().tenant_id, name, body)
        view = tenant_lists.list_view(row)
    response = jsonify(view)
    response.status_code = 201 if created else 200
    return response


@blueprint.get("/lists")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def list_lists() -> Response:
    with session_scope(api_context().settings.database_url) as session:
        items = [
            tenant_lists.list_view(row)
            for row in tenant_lists.list_lists(session, current_caller().tenant_id)
        ]
    return jsonify({"object": "list", "data": items, "has_more": False})


@blueprint.get("/lists/<name>")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def get_list(name: str) -> Response:
    _check_name(name)
    with session_scope(api_context().settings.database_url) as session:
        row = tenant_lists.get_list(session, current_caller().tenant_id, name)
        if row is None:
            raise Problem(ProblemType.NOT_FOUND, f"No moderation list {name!r}.")
        view = tenant_lists.list_view(row)
    return jsonify(view)


@blueprint.delete("/lists/<name>")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def delete_list(name: str) -> Response:
    _check_name(name)
    with session_scope(api_context().settings.database_url) as session:
        if not tenant_lists.delete_list(session, current_caller().tenant_id, name):
            raise Problem(ProblemType.NOT_FOUND, f"No moderation list {name!r}.")
    return Response(status=204)
