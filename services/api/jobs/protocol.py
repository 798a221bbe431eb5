"""Request bodies of the job endpoints. Bounds that depend on settings read them from the
validation context (``parse_json_body`` passes the settings)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.config import Settings
from shared.messaging.topology import MAX_PRIORITY

MAX_METADATA_BYTES = 16_384
MAX_TURN_CHARS = 32_000
MAX_STOP_SEQUENCES = 4
MAX_STOP_LENGTH = 64
# Below this a sampling temperature stops meaning anything but greedy, and divides the logits
# into overflow (1e-300 made a whole batch fail): 0 asks for greedy, anything else starts here.
MIN_SAMPLING_TEMPERATURE = 0.01
SESSION_ID_PATTERN = r"^[A-Za-z0-9._:\-]+$"


def _settings(info: ValidationInfo) -> Settings:
    return (info.context or {})["settings"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class TurnIn(StrictModel):
    role: Literal["user", "assistant"]
    content: str = Field(min_length=1, max_length=MAX_TURN_CHARS)

    _content_has_no_nul = field_validator("content")(_no_nul)


class ParamsIn(StrictModel):
    max_new_tokens: int | None = Field(None, ge=1, description="defaults to the server's")
    temperature: float = Field(
        0.0, ge=0.0, le=2.0, description=f"0 is greedy; otherwise {MIN_SAMPLING_TEMPERATURE} to 2"
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    stop: list[str] = Field(
        default_factory=list, max_length=MAX_STOP_SEQUENCES, description="end the answer here"
    )

    @field_validator("stop")
    @classmethod
    def _stop_sequences(cls, value: list[str]) -> list[str]:
        if any(not 0 < len(stop) <= MAX_STOP_LENGTH for stop in value):
            raise ValueError(f"each stop sequence must be 1 to {MAX_STOP_LENGTH} characters")
        return value

    @field_validator("temperature")
    @classmethod
    def _greedy_or_sampling(cls, value: float) -> float:
        if 0.0 < value < MIN_SAMPLING_TEMPERATURE:
            raise ValueError(
                f"must be 0 (greedy) or from {MIN_SAMPLING_TEMPERATURE} to 2 (sampling)"
            )
        return value

    @field_validator("max_new_tokens")
    @classmethod
    def _within_limit(cls, value: int | None, info: ValidationInfo) -> int | None:
        limit = _settings(info).max_new_tokens_limit
        if value is not None and value > limit:
            raise ValueError(f"must be at most {limit}")
        return value


class ConversationIn(StrictModel):
    """What a chat turn needs: the question and the conversation it belongs to."""

    query: str = Field(min_length=1)
    session_id: str | None = Field(None, min_length=1, max_length=128, pattern=SESSION_ID_PATTERN)
    history: list[TurnIn] = Field(default_factory=list)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    params: ParamsIn = Field(default_factory=ParamsIn)

    @field_validator("query")
    @classmethod
    def _query_bounds(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        _no_nul(value)
        limit = _settings(info).max_query_chars
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value

    @field_validator("history")
    @classmethod
    def _history_bounds(cls, value: list[TurnIn], info: ValidationInfo) -> list[TurnIn]:
        settings = _settings(info)
        if len(value) > settings.max_history_messages:
            raise ValueError(f"must hold at most {settings.max_history_messages} messages")
        # a bound on the whole, not only on each turn: the worker tokenises what it keeps
        characters = sum(len(turn.content) for turn in value)
        if characters > settings.max_history_chars:
            raise ValueError(
                f"must hold at most {settings.max_history_chars} characters in all "
                f"(it holds {characters})"
            )
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        serialised = json.dumps(value)
        if len(serialised) > MAX_METADATA_BYTES:
            raise ValueError(f"must serialise to at most {MAX_METADATA_BYTES} bytes of JSON")
        if "\\u0000" in serialised:
            raise ValueError("must not contain NUL characters")
        return value


class JobCreate(ConversationIn):
    webhook_url: str | None = Field(None, min_length=1, max_length=2048)
    priority: int = Field(0, ge=0, le=MAX_PRIORITY, description="9 is served first")
    deadline_s: float | None = Field(
        None, gt=0, le=7 * 86_400, description="expire the job if not started within this"
    )

    @model_validator(mode="after")
    def _no_webhook_blank(self) -> JobCreate:
        if self.webhook_url is not None and not self.webhook_url.strip():
            raise ValueError("webhook_url must not be blank")
        return self
