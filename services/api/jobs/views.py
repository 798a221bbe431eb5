"""HTTP routes of the job endpoints. Handlers parse, call the service, shape the answer."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, jsonify, request

from services.api.auth import current_caller, hold_wait_slot_until_answered, require_api_key
from services.api.context import api_context
from services.api.jobs.listing import load_job_page
from services.api.jobs.protocol import JobCreate, JobListQuery
from services.api.jobs.service import (
    RenderedJob,
    cancel_job,
    load_job,
    request_fingerprint,
    submit_job,
    wait_for_job_view,
)
from services.api.problems import Problem, ProblemType
from services.api.request_body import parse_json_body
from shared.api_keys import Scope
from shared.db.models import Job
from shared.job_view import JobView

blueprint = Blueprint("jobs", __name__, url_prefix="/v1")


def job_response(job: Job, status: int) -> Response:
    response = jsonify(JobView.from_job(job).model_dump(mode="json"))
    response.status_code = status
    return response


def parse_job_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Problem(ProblemType.NOT_FOUND, f"No job {raw!r}.") from None


def parse_wait(max_wait_s: float) -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= max_wait_s:
        raise Problem(
            ProblemType.INVALID_PARAMETER,
            f"wait must be a number of seconds from 0 to {max_wait_s:g}.",
        )
    return wait


@blueprint.post("/jobs")
@require_api_key(Scope.JOBS_WRITE)
def create_job() -> Response:
    job_in = parse_json_body(JobCreate)
    submission = submit_job(
        api_context(),
        current_caller(),
        job_in,
        fingerprint=request_fingerprint("jobs", job_in),
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    response = job_response(submission.job, 202)
    response.headers["Location"] = f"/v1/jobs/{submission.job.id}"
    if not submission.created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@blueprint.get("/jobs")
@require_api_key(Scope.JOBS_READ)
def list_jobs() -> Response:
    """The tenant's jobs, newest first: ``status`` (repeatable), ``session_id``,
    ``created_after``/``created_before`` (RFC 3339, exclusive), ``limit`` and ``after``."""
    query = JobListQuery.from_query(request.args.to_dict(flat=False))
    page = load_job_page(api_context(), current_caller(), query)
    return jsonify(page.model_dump(mode="json"))


@blueprint.get("/jobs/<job_id>")
@require_api_key(Scope.JOBS_READ)
def get_job(job_id: str) -> Response:
    ctx = api_context()
    parsed = parse_job_id(job_id)
    wait = parse_wait(ctx.settings.max_long_poll_s)
    if wait:
        job = wait_for_job_view(
            ctx,
            current_caller(),
            parsed,
            wait,
            hold_slot=lambda: hold_wait_slot_until_answered(wait),
        )
    else:
        job = load_job(ctx, current_caller(), parsed)
    if job is None:
        raise Problem(ProblemType.NOT_FOUND, f"No job {job_id!r}.")
    if isinstance(job, RenderedJob):
        return jsonify(job.view)
    return job_response(job, 200)


@blueprint.post("/jobs/<job_id>/cancel")
@require_api_key(Scope.JOBS_WRITE)
def cancel(job_id: str) -> Response:
    job = cancel_job(api_context(), current_caller(), parse_job_id(job_id))
    if job is None:
        raise Problem(ProblemType.NOT_FOUND, f"No job {job_id!r}.")
    return job_response(job, 200)
