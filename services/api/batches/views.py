"""HTTP routes of batches. Handlers parse, call the service, shape the answer."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError

from services.api.auth import current_caller, require_api_key
from services.api.batches.lines import (
    capped_validation_problem,
    check_batch_webhook,
    read_job_batch,
    read_json_lines,
)
from services.api.batches.protocol import (
    JSON_LINES,
    JSON_LINES_MEDIA_TYPES,
    BatchListQuery,
    BatchQuery,
    JobBatchCreate,
)
from services.api.batches.results import result_lines
from services.api.batches.service import (
    BatchSubmission,
    cancel_batch,
    load_batch,
    load_batch_page,
    submit_batch,
)
from services.api.context import api_context
from services.api.problems import Problem, ProblemType
from services.api.request_body import parse_json_body, read_body
from shared.api_keys import Scope

blueprint = Blueprint("batches", __name__, url_prefix="/v1")


def parse_batch_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Problem(ProblemType.NOT_FOUND, f"No batch {raw!r}.") from None


def accepted(submission: BatchSubmission) -> Response:
    view = submission.state.view()
    response = jsonify(view.model_dump(mode="json"))
    response.status_code = 202
    response.headers["Location"] = view.links.self
    if not submission.created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@blueprint.post("/batches")
@require_api_key(Scope.JOBS_WRITE)
def create_batch() -> Response:
    """Jobs as JSON lines (``{"custom_id", "body"}`` a line); the batch's ``webhook_url`` and
    ``metadata`` (a JSON object) as query parameters."""
    ctx = api_context()
    settings = ctx.settings
    if request.mimetype not in JSON_LINES_MEDIA_TYPES:
        raise Problem(
            ProblemType.UNSUPPORTED_MEDIA_TYPE,
            f"Send the jobs as JSON lines, one job a line, with `Content-Type: {JSON_LINES}` "
            "(or application/x-ndjson).",
        )
    options = BatchQuery.from_query(request.args.to_dict(flat=False))
    check_batch_webhook(options, settings)
    # this route's bodies are bigger than any other's (CHATQ_MAX_REQUEST_BYTES)
    request.max_content_length = settings.max_batch_bytes
    batch_in = read_json_lines(read_body(settings.max_batch_bytes), options, settings)
    submission = submit_batch(
        ctx, current_caller(), batch_in, idempotency_key=request.headers.get("Idempotency-Key")
    )
    return accepted(submission)


@blueprint.post("/jobs/batch")
@require_api_key(Scope.JOBS_WRITE)
def create_job_batch() -> Response:
    """``{"jobs": [<POST /v1/jobs body>, …], "webhook_url"?, "metadata"?}``."""
    ctx = api_context()
    try:
        body = parse_json_body(JobBatchCreate)
    except ValidationError as error:
        raise capped_validation_problem(error) from None
    check_batch_webhook(body, ctx.settings)
    batch_in = read_job_batch(body, ctx.settings)
    submission = submit_batch(
        ctx, current_caller(), batch_in, idempotency_key=request.headers.get("Idempotency-Key")
    )
    return accepted(submission)


@blueprint.get("/batches")
@require_api_key(Scope.JOBS_READ)
def list_batches() -> Response:
    """The tenant's batches, newest first: ``status`` (repeatable), ``limit``, ``after``."""
    query = BatchListQuery.from_query(request.args.to_dict(flat=False))
    page = load_batch_page(api_context(), current_caller(), query)
    return jsonify(page.model_dump(mode="json"))


@blueprint.get("/batches/<batch_id>")
@require_api_key(Scope.JOBS_READ)
def get_batch(batch_id: str) -> Response:
    state = load_batch(api_context(), current_caller(), parse_batch_id(batch_id))
    if state is None:
        raise Problem(ProblemType.NOT_FOUND, f"No batch {batch_id!r}.")
    return jsonify(state.view().model_dump(mode="json"))


@blueprint.get("/batches/<batch_id>/results")
@require_api_key(Scope.JOBS_READ)
def batch_results(batch_id: str) -> Response:
    ctx = api_context()
    state = load_batch(ctx, current_caller(), parse_batch_id(batch_id))
    if state is None:
        raise Problem(ProblemType.NOT_FOUND, f"No batch {batch_id!r}.")
    lines = result_lines(ctx.settings.database_url, state.batch.id)
    return Response(lines, mimetype=JSON_LINES)


@blueprint.post("/batches/<batch_id>/cancel")
@require_api_key(Scope.JOBS_WRITE)
def cancel(batch_id: str) -> Response:
    state = cancel_batch(api_context(), current_caller(), parse_batch_id(batch_id))
    if state is None:
        raise Problem(ProblemType.NOT_FOUND, f"No batch {batch_id!r}.")
    return jsonify(state.view().model_dump(mode="json"))
