"""HTTP routes for a job's webhook deliveries."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from services.api.auth import current_caller, require_api_key
from services.api.context import api_context
from services.api.jobs.views import parse_job_id
from services.api.webhooks.service import list_deliveries, resend_dead
from shared.api_keys import Scope

blueprint = Blueprint("webhooks", __name__, url_prefix="/v1")


@blueprint.get("/jobs/<job_id>/webhooks")
@require_api_key(Scope.JOBS_READ)
def deliveries(job_id: str) -> Response:
    return jsonify(data=list_deliveries(api_context(), current_caller(), parse_job_id(job_id)))


@blueprint.post("/jobs/<job_id>/webhooks/resend")
@require_api_key(Scope.JOBS_WRITE)
def resend(job_id: str) -> Response:
    resent = resend_dead(api_context(), current_caller(), parse_job_id(job_id))
    response = jsonify(data=resent)
    response.status_code = 202
    return response
