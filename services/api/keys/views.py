"""HTTP routes of a tenant's keys (``admin`` scope): list, issue, revoke, rotate."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from services.api.auth import current_caller, require_api_key
from services.api.context import api_context
from services.api.keys.protocol import KeyCreate, KeyRotate
from services.api.keys.service import create_key, list_keys, revoke_key, rotate_key
from services.api.request_body import parse_json_body
from shared.api_keys import Scope

blueprint = Blueprint("keys", __name__, url_prefix="/v1")


def _created(body: dict[str, object], key_id: object) -> Response:
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = f"/v1/keys/{key_id}"
    response.headers["Cache-Control"] = "no-store"  # it holds the secret
    return response


@blueprint.get("/keys")
@require_api_key(Scope.ADMIN)
def get_keys() -> Response:
    keys = list_keys(api_context().settings.database_url, current_caller())
    return jsonify(
        {"object": "list", "data": [k.model_dump(mode="json") for k in keys], "has_more": False}
    )


@blueprint.post("/keys")
@require_api_key(Scope.ADMIN)
def post_key() -> Response:
    key_in = parse_json_body(KeyCreate)
    issued = create_key(api_context().settings.database_url, current_caller(), key_in)
    return _created(issued.model_dump(mode="json"), issued.id)


@blueprint.post("/keys/<key_id>/revoke")
@require_api_key(Scope.ADMIN)
def revoke(key_id: str) -> Response:
    return jsonify(
        revoke_key(api_context().settings.database_url, current_caller(), key_id).model_dump(
            mode="json"
        )
    )


@blueprint.post("/keys/<key_id>/rotate")
@require_api_key(Scope.ADMIN)
def rotate(key_id: str) -> Response:
    settings = api_context().settings
    # the body is optional: an empty one takes the default grace period
    body = parse_json_body(KeyRotate) if request.get_data(cache=True).strip() else KeyRotate()
    grace_s = settings.key_rotation_grace_s if body.grace_s is None else body.grace_s
    issued = rotate_key(settings.database_url, current_caller(), key_id, grace_s)
    return _created(issued.model_dump(mode="json"), issued.id)
