"""Messages between the services (JSON bodies on the broker), as pydantic models.

``InferenceRequest`` goes from the API (or the outbox relay) to ``chat.inference``;
``InferenceOutcome`` goes from an inference worker to the post-processing task.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["user", "assistant"]


class ChatTurn(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Role
    content: str


class GenerationParams(BaseModel):
    """Fully resolved generation parameters of one job."""

    model_config = ConfigDict(frozen=True)

    max_new_tokens: int = Field(ge=1)
    temperature: float = Field(0.0, ge=0.0)  # 0 means greedy
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: tuple[str, ...] = ()  # the answer ends before the first of these
    min_new_tokens: int = Field(0, ge=0)  # benchmarks: generate exactly max_new_tokens

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class InferenceRequest(BaseModel):
    job_id: uuid.UUID
    query: str
    history: list[ChatTurn] = Field(default_factory=list)
    session_id: uuid.UUID | None = None  # chatq's session row; its stored turns join the prompt
    params: GenerationParams
    priority: int = Field(0, ge=0, le=9)
    deadline_at: datetime | None = None
    submitted_at: datetime
    # the API listens on the job's stream queue: publish the answer's text as it is generated
    stream: bool = False


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Timings(BaseModel):
    queue_ms: float  # submitted → its batch started
    inference_ms: float  # its batch's generation (0 when the model did not run)
    batch_size: int  # jobs generated together with it (0 when the model did not run)
    route_ms: float | None = None  # deciding the route: intents, FAQ, cache, retrieval
    total_ms: float | None = None  # submitted → completed, set when the result is stored


class EngineInfo(BaseModel):
    name: str  # "onnxruntime" or "pytorch"
    providers: list[str]  # what the session really runs on (onnxruntime can fall back silently)
    model: str
    variant: str = "fp32"  # fp32, or a quantised export (int8, fp16)
    # the model version served (``chatq models``); None: CHATQ_MODEL_DIR, no version active
    version: str | None = None


class JobError(BaseModel):
    code: str
    message: str


Route = Literal["moderation", "rule", "faq", "cache", "knowledge", "llm", "fallback"]


class Source(BaseModel):
    """Knowledge an answer came from."""

    kind: Literal["faq", "document", "intent"]
    id: str
    title: str
    score: float


class IntentMatch(BaseModel):
    name: str
    confidence: float
    slots: dict[str, str] = Field(default_factory=dict)


class InferenceOutcome(BaseModel):
    job_id: uuid.UUID
    status: Literal["completed", "failed", "expired"]
    response: str | None = None
    route: Route | None = None
    sources: list[Source] = Field(default_factory=list)
    intent: IntentMatch | None = None
    handoff: bool = False
    moderation: dict[str, Any] | None = None  # what input moderation found: {flagged, …, stage}
    finish_reason: Literal["stop", "length"] | None = None
    usage: Usage | None = None
    timings: Timings | None = None
    engine: EngineInfo | None = None
    error: JobError | None = None
    finished_at: datetime
