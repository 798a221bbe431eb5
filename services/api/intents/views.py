"""HTTP routes of a tenant's intents and its routing settings (fallback answer, model alone)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from services.api.auth import current_caller, require_api_key
from services.api.context import api_context
from services.api.problems import Problem, ProblemType
from services.api.request_body import parse_json_body
from shared.api_keys import Scope
from shared.db.engine import session_scope
from shared.db.models import IntentDefinitionRow, Tenant
from shared.knowledge import store
from shared.knowledge.schemas import INTENT_NAME_PATTERN, IntentIn, TenantSettings

blueprint = Blueprint("intents", __name__, url_prefix="/v1")


def _intent_view(row: IntentDefinitionRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "object": "intent",
        **row.definition,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def _check_name(name: str) -> str:
    if not INTENT_NAME_PATTERN.fullmatch(name):
        raise Problem(
            ProblemType.INVALID_ID, "Intent names are 1-64 characters of A-Z a-z 0-9 . _ -."
        )
    return name


@blueprint.put("/intents/<name>")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def put_intent(name: str) -> Response:
    _check_name(name)
    intent = parse_json_body(IntentIn)
    with session_scope(api_context().settings.database_url) as session:
        row, created = store.put_intent(session, current_caller().tenant_id, name, intent)
        body = _intent_view(row)
    response = jsonify(body)
    response.status_code = 201 if created else 200
    return response


@blueprint.get("/intents")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def list_intents() -> Response:
    with session_scope(api_context().settings.database_url) as session:
        rows = store.list_intents(session, current_caller().tenant_id)
        items = [_intent_view(row) for row in rows]
    return jsonify({"object": "list", "data": items, "has_more": False})


@blueprint.get("/intents/<name>")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def get_intent(name: str) -> Response:
    _check_name(name)
    with session_scope(api_context().settings.database_url) as session:
        row = store.get_intent(session, current_caller().tenant_id, name)
        if row is None:
            raise Problem(ProblemType.NOT_FOUND, f"No intent {name!r}.")
        body = _intent_view(row)
    return jsonify(body)


@blueprint.delete("/intents/<name>")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def delete_intent(name: str) -> Response:
    _check_name(name)
    with session_scope(api_context().settings.database_url) as session:
        if not store.delete_intent(session, current_caller().tenant_id, name):
            raise Problem(ProblemType.NOT_FOUND, f"No intent {name!r}.")
    return Response(status=204)


@blueprint.get("/tenant")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def get_tenant() -> Response:
    with session_scope(api_context().settings.database_url) as session:
        tenant = session.get(Tenant, current_caller().tenant_id)
        if tenant is None:
            raise Problem(ProblemType.NOT_FOUND, "The key's tenant no longer exists.")
        body = store.tenant_summary(session, tenant)
    return jsonify(body)


@blueprint.put("/tenant/settings")
@require_api_key(Scope.KNOWLEDGE_WRITE)
def put_tenant_settings() -> Response:
    settings = parse_json_body(TenantSettings)
    with session_scope(api_context().settings.database_url) as session:
        tenant = store.put_settings(session, current_caller().tenant_id, settings)
        body = store.tenant_summary(session, tenant)
    return jsonify(body)
