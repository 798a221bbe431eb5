"""``POST /v1/chat/completions``: the OpenAI Chat Completions format, so that existing OpenAI
clients (the ``openai`` package with ``base_url`` pointed at chatq, and the API key as its
key) work unchanged.

Underneath it is ``POST /v1/chat``: a job, routed by the tenant's knowledge and rules, answered
in one round trip. The conversation maps as follows: the last message is the question and must
be the customer's (``user``); the earlier ``user`` and ``assistant`` messages are its history;
``system`` and ``developer`` messages are accepted but not applied, because what chatq answers
with is the tenant's business (its knowledge, rules and settings, and the server's system
prompt), not instructions a caller sends along. ``model`` is echoed back and does not choose
anything: the workers run one model. ``n`` must be 1. Streaming (``stream: true``) is not
offered yet and is refused with a problem that says so.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict, Field

from services.api.auth import require_api_key
from services.api.chat.views import answer_in_one_round_trip
from services.api.context import api_context
from services.api.jobs.protocol import JobCreate
from services.api.problems import PROBLEM_CONTENT_TYPE, Problem, ProblemType
from services.api.request_body import parse_json_body
from shared.api_keys import Scope
from shared.db.models import Job

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
        raise Problem(
            ProblemType.BAD_REQUEST,
            "Streaming (`stream: true`) is not offered yet; send `stream: false` (the default).",
        )
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


def completion_of(job: Job, model: str) -> ChatCompletion:
    usage = job.usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    limit = (job.params or {}).get("max_new_tokens")
    cut = limit is not None and usage["completion_tokens"] >= limit
    return ChatCompletion(
        id=f"chatcmpl-{job.id}",
        created=int(job.created_at.timestamp()),
        model=model,
        choices=[
            Choice(
                message=CompletionMessageOut(content=job.response),
                finish_reason="length" if cut else "stop",
            )
        ],
        usage=CompletionUsage.model_validate(usage),
        chatq=ChatqExtension(
            job_id=str(job.id),
            route=job.route,
            sources=job.sources or [],
            intent=job.intent,
            handoff=bool(job.handoff),
        ),
    )
