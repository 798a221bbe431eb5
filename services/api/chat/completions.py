"""``POST /v1/chat/completions``: the OpenAI Chat Completions format, so that existing OpenAI
clients (the ``openai`` package with ``base_url`` pointed at chatq, and the API key as its
key) work unchanged.

Underneath it is ``POST /v1/chat``: a job, routed by the tenant's knowledge and rules, answered
in one round trip. The conversation maps as follows: the last message is the question and must
be the customer's (``user``); the earlier ``user`` and ``assistant`` messages are its history;
``system`` and ``developer`` messages are accepted but not applied, because what chatq answers
with is the tenant's business (its knowledge, rules and settings, and the server's system
prompt), not instructions a caller sends along. ``model`` is echoed back and does not choose
anything: the workers run one model. ``n`` must be 1.

``stream: true`` answers with server-sent ``chat.completion.chunk`` events as OpenAI sends
them: the assistant role, the text as the worker generates it, a last chunk with the finish
reason (``content_filter`` when output moderation changed the answer), the usage when
``stream_options.include_usage`` asks for it, then ``data: [DONE]``. A job that fails midway
sends an ``error`` object, which OpenAI clients raise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from services.api.auth import require_api_key
from services.api.chat.streaming import StreamedJob
from services.api.chat.views import (
    KEEPALIVE_COMMENT,
    answer_in_one_round_trip,
    event_stream,
    job_failed,
    timed_out,
)
from services.api.context import api_context
from services.api.jobs.protocol import JobCreate
from services.api.problems import PROBLEM_CONTENT_TYPE, Problem, ProblemType
from services.api.request_body import parse_json_body
from shared.api_keys import Scope
from shared.db.models import Job, JobStatus

blueprint = Blueprint("completions", __name__, url_prefix="/v1")

IGNORED_ROLES = frozenset({"system", "developer"})


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class CompletionMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The Chat Completions request; fields chatq has no use for (``user``,
    ``frequency_penalty``, ``logit_bias``, …) are accepted and ignored, as OpenAI clients send
    some of them by default."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=256)
    messages: list[CompletionMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="chatq gives one answer")
    metadata: dict[str, str] | None = None


class CompletionMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None


class Choice(BaseModel):
    index: int = 0
    message: CompletionMessageOut
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatqExtension(BaseModel):
    """What chatq adds: the job behind the answer and how it was answered."""

    job_id: str
    route: str | None
    sources: list[dict[str, Any]]
    intent: dict[str, Any] | None
    handoff: bool


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    system_fingerprint: str | None = None
    chatq: ChatqExtension


@blueprint.post("/chat/completions")
@require_api_key(Scope.JOBS_WRITE)
def create() -> Response:
    completion_in = parse_json_body(ChatCompletionRequest)
    if completion_in.stream:
        streamed = StreamedJob(
            job_for(completion_in), "chat.completions", request.headers.get("Idempotency-Key")
        )
        return event_stream(completion_chunks(streamed, completion_in), streamed)
    job = answer_in_one_round_trip(job_for(completion_in), "chat.completions")
    return jsonify(completion_of(job, completion_in.model).model_dump(mode="json"))


@blueprint.after_request
def _openai_error_member(response: Response) -> Response:
    """A refusal stays problem+json, with OpenAI's ``error`` object added as an extension
    member: OpenAI clients show ``error.message`` (without it: only "Error code: 400")."""
    if response.mimetype != PROBLEM_CONTENT_TYPE:
        return response
    problem = json.loads(response.get_data())
    problem["error"] = {
        "message": problem.get("detail") or problem.get("title"),
        "type": problem.get("type", "").rsplit(":", 1)[-1],
        "code": problem.get("status"),
    }
    response.set_data(json.dumps(problem))
    return response


def job_for(completion_in: ChatCompletionRequest) -> JobCreate:
    """The job a Chat Completions request asks for (bounds checked as for ``/v1/jobs``)."""
    conversation = [m for m in completion_in.messages if m.role not in IGNORED_ROLES]
    if not conversation or conversation[-1].role != "user":
        raise Problem(
            ProblemType.VALIDATION_ERROR,
            "The last message (system and developer messages aside) must be the customer's "
            "(`role: user`): it is the question answered.",
        )
    stop = [completion_in.stop] if isinstance(completion_in.stop, str) else completion_in.stop
    params: dict[str, Any] = {
        "max_new_tokens": completion_in.max_completion_tokens or completion_in.max_tokens,
        "temperature": completion_in.temperature or 0.0,
        "top_p": completion_in.top_p if completion_in.top_p is not None else 1.0,
        "seed": completion_in.seed,
        "stop": stop or [],
    }
    return JobCreate.model_validate(
        {
            "query": conversation[-1].text,
            "history": [{"role": m.role, "content": m.text} for m in conversation[:-1]],
            "metadata": dict(completion_in.metadata or {}),
            "params": params,
        },
        context={"settings": api_context().settings},
    )


def _usage(job: Job) -> dict[str, int]:
    return job.usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def _finish_reason(job: Job) -> Literal["stop", "length"]:
    limit = (job.params or {}).get("max_new_tokens")
    return "length" if limit is not None and _usage(job)["completion_tokens"] >= limit else "stop"


def completion_chunks(streamed: StreamedJob, completion_in: ChatCompletionRequest) -> Iterator[str]:
    """The Chat Completions stream of ``streamed``, as OpenAI sends it."""
    created = int(streamed.job.created_at.timestamp())
    job_id = streamed.job.id

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        body = {
            "id": f"chatcmpl-{job_id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": completion_in.model,
            "system_fingerprint": None,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for piece in streamed.pieces():
        if piece.keepalive:
            yield KEEPALIVE_COMMENT
        elif piece.text:
            yield chunk({"content": piece.text})
        elif piece.final is not None and piece.final.status is not JobStatus.COMPLETED:
            yield _error_chunk(job_failed(piece.final))
        elif piece.final is not None:
            job = piece.final
            replaced = (job.moderation or {}).get("stage") == "output" and bool(
                (job.moderation or {}).get("flagged")
            )
            yield chunk(
                {},
                "content_filter" if replaced else _finish_reason(job),
                chatq=_extension(job).model_dump(mode="json"),
            )
            if completion_in.stream_options and completion_in.stream_options.include_usage:
                body = {
                    "id": f"chatcmpl-{job_id}",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": completion_in.model,
                    "choices": [],
                    "usage": _usage(job),
                }
                yield f"data: {json.dumps(body)}\n\n"
        elif piece.timed_out:
            yield _error_chunk(timed_out(job_id))
    yield "data: [DONE]\n\n"


def _error_chunk(problem: Problem) -> str:
    body = problem.body()
    error = {"message": body["detail"], "type": body["type"].rsplit(":", 1)[-1], "code": None}
    return f"data: {json.dumps({'error': error, **body})}\n\n"


def _extension(job: Job) -> ChatqExtension:
    return ChatqExtension(
        job_id=str(job.id),
        route=job.route,
        sources=job.sources or [],
        intent=job.intent,
        handoff=bool(job.handoff),
    )


def completion_of(job: Job, model: str) -> ChatCompletion:
    return ChatCompletion(
        id=f"chatcmpl-{job.id}",
        created=int(job.created_at.timestamp()),
        model=model,
        choices=[
            Choice(
                message=CompletionMessageOut(content=job.response),
                finish_reason=_finish_reason(job),
            )
        ],
        usage=CompletionUsage.model_validate(_usage(job)),
        chatq=_extension(job),
    )
