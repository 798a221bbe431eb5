"""HTTP routes of model versions (``operator`` scope: they change what every tenant is answered
by). Registering a folder stays with the CLI (``chatq models register``): a path on the
workers' disks is the operator's to name, not an HTTP caller's."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from services.api.auth import require_api_key
from services.api.context import api_context
from services.api.models.protocol import ModelVersionList, ModelVersionView
from services.api.problems import Problem, ProblemType
from shared.api_keys import Scope
from shared.model_versions import (
    ModelVersionError,
    UnknownModelVersionError,
    activate_model_version,
    deactivate_model_versions,
    list_model_versions,
)

blueprint = Blueprint("models", __name__, url_prefix="/v1/operator/models")


def _listing() -> Response:
    settings = api_context().settings
    versions = list_model_versions(settings.database_url)
    body = ModelVersionList(
        data=[ModelVersionView.of(version) for version in versions],
        default_model_dir=str(settings.model_dir),
    )
    return jsonify(body.model_dump(mode="json"))


@blueprint.get("")
@require_api_key(Scope.OPERATOR)
def list_versions() -> Response:
    return _listing()


@blueprint.post("/<name>/activate")
@require_api_key(Scope.OPERATOR)
def activate(name: str) -> Response:
    try:
        version = activate_model_version(api_context().settings.database_url, name)
    except UnknownModelVersionError:
        raise Problem(ProblemType.NOT_FOUND, f"No model version {name!r}.") from None
    except ModelVersionError as error:
        raise Problem(ProblemType.MODEL_NOT_SERVABLE, str(error)) from None
    return jsonify(ModelVersionView.of(version).model_dump(mode="json"))


@blueprint.post("/deactivate")
@require_api_key(Scope.OPERATOR)
def deactivate() -> Response:
    deactivate_model_versions(api_context().settings.database_url)
    return _listing()
