"""``POST /v1/chat``: submit and wait, for callers that want one round trip.

It is an ordinary job underneath (queued, batched, stored, visible at ``/v1/jobs/{id}``); only
the waiting happens in the server.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

from flask import Blueprint, Response, request, stream_with_context

from services.api.auth import current_caller, hold_wait_slot_until_answered, require_api_key
from services.api.chat.protocol import ChatRequest
from services.api.chat.streaming import StreamedJob
from services.api.context import api_context
from services.api.jobs.protocol import JobCreate
from services.api.jobs.service import request_fingerprint, submit_job, wait_for_job
from services.api.jobs.views import job_response
from services.api.problems import Problem, ProblemType
from services.api.request_body import parse_json_body
from shared.api_keys import Scope
from shared.db.models import Job, JobStatus
from shared.job_view import JobView

blueprint = Blueprint("chat", __name__, url_prefix="/v1")


@blueprint.post("/chat")
@require_api_key(Scope.JOBS_WRITE)
def chat() -> Response:
    chat_in = parse_json_body(ChatRequest)
    # the validated fields as they are (nested models included), all but the answer's form
    fields = {name: value for name, value in dict(chat_in).items() if name != "stream"}
    job_in = JobCreate.model_construct(**fields)
    if chat_in.stream:
        streamed = StreamedJob(job_in, "chat", request.headers.get("Idempotency-Key"))
        return event_stream(chat_events(streamed), streamed)
    return job_response(answer_in_one_round_trip(job_in, "chat"), 200)


def event_stream(events: Iterator[str], streamed: StreamedJob) -> Response:
    response = Response(stream_with_context(events), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # proxies (nginx) pass each event at once
    # released however the response ends, its body read to the end, in part or not at all
    response.call_on_close(streamed.close)
    return response


KEEPALIVE_COMMENT = ": keepalive\n\n"  # an SSE comment: clients skip it


def _event(name: str, data: object) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def chat_events(streamed: StreamedJob) -> Iterator[str]:
    """``delta`` events, then ``done`` with the job, or ``error`` with a problem."""
    yield ": stream open\n\n"  # headers and a first byte at once, before the job is queued
    for piece in streamed.pieces():
        if piece.keepalive:
            yield KEEPALIVE_COMMENT
        elif piece.text:
            yield _event("delta", {"text": piece.text})
        elif piece.final is not None:
            if piece.final.status is JobStatus.COMPLETED:
                yield _event("done", JobView.from_job(piece.final).model_dump(mode="json"))
            else:
                yield _event("error", job_failed(piece.final).body())
        elif piece.timed_out:
            yield _event("error", timed_out(streamed.job.id).body())


def answer_in_one_round_trip(job_in: JobCreate, endpoint: str) -> Job:
    """Submit ``job_in`` and wait for its answer (``POST /v1/chat`` and its OpenAI-format
    twin): the completed job, or a problem (504 with the job's link, 502 if it failed)."""
    ctx = api_context()
    # the wait slot is taken before the job exists: a refused chat leaves no job behind
    with hold_wait_slot_until_answered(ctx.settings.chat_timeout_s):
        submission = submit_job(
            ctx,
            current_caller(),
            job_in,
            fingerprint=request_fingerprint(endpoint, job_in),
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        job_id = submission.job.id
        job = wait_for_job(ctx, current_caller(), job_id, ctx.settings.chat_timeout_s)
    if job is None or not job.status.is_terminal:
        raise timed_out(job_id)
    if job.status is not JobStatus.COMPLETED:
        raise job_failed(job)
    return job


def timed_out(job_id: uuid.UUID) -> Problem:
    link = f"/v1/jobs/{job_id}"
    timeout_s = api_context().settings.chat_timeout_s
    return Problem(
        ProblemType.TIMEOUT,
        f"No answer within {timeout_s:g} s; the job goes on: poll {link}.",
        job_id=str(job_id),
        headers={"Location": link},
    )


def job_failed(job: Job) -> Problem:
    return Problem(
        ProblemType.JOB_FAILED,
        f"The job ended {job.status.value}: {(job.error or {}).get('message', 'no reason')}.",
        job_id=str(job.id),
        status_of_job=job.status.value,
    )
