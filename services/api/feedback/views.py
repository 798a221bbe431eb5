"""HTTP routes of feedback on a job: give (or replace) it, read it."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from services.api.auth import current_caller, require_api_key
from services.api.context import api_context
from services.api.feedback.protocol import FeedbackCreate, FeedbackView
from services.api.feedback.service import load_feedback, store_feedback
from services.api.jobs.views import parse_job_id
from services.api.request_body import parse_json_body
from shared.api_keys import Scope

blueprint = Blueprint("feedback", __name__, url_prefix="/v1")


@blueprint.post("/jobs/<job_id>/feedback")
@require_api_key(Scope.JOBS_WRITE)
def give_feedback(job_id: str) -> Response:
    parsed = parse_job_id(job_id)
    feedback = parse_json_body(FeedbackCreate)
    stored = store_feedback(api_context(), current_caller(), parsed, feedback)
    response = jsonify(FeedbackView.of(stored.row).model_dump(mode="json"))
    response.status_code = 201 if stored.created else 200
    return response


@blueprint.get("/jobs/<job_id>/feedback")
@require_api_key(Scope.JOBS_READ)
def read_feedback(job_id: str) -> Response:
    row = load_feedback(api_context(), current_caller(), parse_job_id(job_id))
    return jsonify(FeedbackView.of(row).model_dump(mode="json"))
