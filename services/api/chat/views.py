"""``POST /v1/chat``: submit and wait, for callers that want one round trip.

It is an ordinary job underneath (queued, batched, stored, visible at ``/v1/jobs/{id}``); only
the waiting happens in the server.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from services.api.auth import current_caller, hold_wait_slot, require_api_key
from services.api.chat.protocol import ChatRequest
from services.api.context import api_context
from services.api.jobs.protocol import JobCreate
from services.api.jobs.service import request_fingerprint, submit_job, wait_for_job
from services.api.jobs.views import job_response
from services.api.problems import Problem, ProblemType
from services.api.request_body import parse_json_body
from shared.api_keys import Scope
from shared.db.models import Job, JobStatus

blueprint = Blueprint("chat", __name__, url_prefix="/v1")


@blueprint.post("/chat")
@require_api_key(Scope.JOBS_WRITE)
def chat() -> Response:
    chat_in = parse_json_body(ChatRequest)
    job_in = JobCreate.model_construct(**dict(chat_in))
    return job_response(answer_in_one_round_trip(job_in, "chat"), 200)


def answer_in_one_round_trip(job_in: JobCreate, endpoint: str) -> Job:
    """Submit ``job_in`` and wait for its answer (``POST /v1/chat`` and its OpenAI-format
    twin): the completed job, or a problem (504 with the job's link, 502 if it failed)."""
    ctx = api_context()
    # the wait slot is taken before the job exists: a refused chat leaves no job behind
    with hold_wait_slot(ctx.settings.chat_timeout_s):
        submission = submit_job(
            ctx,
            current_caller(),
            job_in,
            fingerprint=request_fingerprint(endpoint, job_in),
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        job_id = submission.job.id
        job = wait_for_job(ctx, current_caller(), job_id, ctx.settings.chat_timeout_s)
    link = f"/v1/jobs/{job_id}"
    if job is None or not job.status.is_terminal:
        raise Problem(
            ProblemType.TIMEOUT,
            f"No answer within {ctx.settings.chat_timeout_s:g} s; the job goes on: poll {link}.",
            job_id=str(job_id),
            headers={"Location": link},
        )
    if job.status is not JobStatus.COMPLETED:
        raise Problem(
            ProblemType.JOB_FAILED,
            f"The job ended {job.status.value}: {(job.error or {}).get('message', 'no reason')}.",
            job_id=str(job_id),
            status_of_job=job.status.value,
        )
    return job
