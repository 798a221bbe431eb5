"""Request bodies of the job endpoints, and the query and page of the job listing. Bounds that
depend on settings read them from the validation context (``parse_json_body`` passes the
settings)."""

from __future__ import annotations

import base64
import json
import re
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.config import Settings
from shared.db.models import JobStatus
from shared.job_view import JobView
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


# --- listing ----------------------------------------------------------------------------------

DEFAULT_JOB_PAGE = 20
MAX_JOB_PAGE = 100
# RFC 3339's date-time: a full date, a full time and an offset (datetime.fromisoformat alone
# would also take a bare date, a naive time or a week date)
RFC_3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CURSOR_LAYOUT = struct.Struct(">q16s")  # created_at in microseconds since EPOCH, the job's id
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{32}$"


@dataclass(frozen=True)
class JobCursor:
    """Where a page ended: its last job's (created_at, id), the order the listing sorts by.

    Clients treat it as opaque. It is the base64url of the microseconds since the epoch (8 bytes)
    and the id (16 bytes), so it names the place exactly, whatever jobs arrive later."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        micros = (self.created_at - EPOCH) // timedelta(microseconds=1)
        return base64.urlsafe_b64encode(CURSOR_LAYOUT.pack(micros, self.id.bytes)).decode()

    @classmethod
    def decode(cls, token: object) -> JobCursor:
        refused = ValueError("is not a cursor this API gave out (pass `next_after` unchanged)")
        if not isinstance(token, str) or not re.fullmatch(CURSOR_PATTERN, token):
            raise refused
        try:  # 32 base64 characters are always 24 bytes: one spelling per place
            micros, id_bytes = CURSOR_LAYOUT.unpack(base64.urlsafe_b64decode(token))
            return cls(EPOCH + timedelta(microseconds=micros), uuid.UUID(bytes=id_bytes))
        except (ValueError, OverflowError):  # binascii.Error is a ValueError
            raise refused from None


def _rfc_3339(value: object) -> datetime:
    if not isinstance(value, str) or not RFC_3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 timestamp such as 2026-11-28T09:30:00Z")
    try:
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("must be a real moment (no leap seconds, within years 1-9999)") from None


def _given_once(value: object) -> object:
    if isinstance(value, list):
        if len(value) != 1:
            raise ValueError("give this parameter at most once")
        return value[0]
    return value


Rfc3339 = BeforeValidator(_rfc_3339)
OneQueryValue = BeforeValidator(_given_once)


class JobListQuery(BaseModel):
    """The query string of ``GET /v1/jobs``. Every parameter arrives as a list of strings
    (``from_query``); ``status`` may be repeated, the others are given at most once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: frozenset[JobStatus] = Field(
        frozenset(), description="any of these statuses; repeat the parameter for several"
    )
    # Before-validators run right to left: the one value is taken out of its list first.
    session_id: Annotated[
        str | None,
        Field(min_length=1, max_length=128, pattern=SESSION_ID_PATTERN),
        OneQueryValue,
    ] = None
    batch_id: Annotated[
        uuid.UUID | None, Field(description="only the jobs of this batch"), OneQueryValue
    ] = None
    created_after: Annotated[datetime | None, Rfc3339, OneQueryValue] = None
    created_before: Annotated[datetime | None, Rfc3339, OneQueryValue] = None
    limit: Annotated[int, Field(ge=1, le=MAX_JOB_PAGE), OneQueryValue] = DEFAULT_JOB_PAGE
    after: Annotated[JobCursor | None, BeforeValidator(JobCursor.decode), OneQueryValue] = None

    @classmethod
    def from_query(cls, args: Mapping[str, list[str]]) -> JobListQuery:
        """Raises pydantic's ``ValidationError`` (a 422 naming each bad parameter)."""
        return cls.model_validate(dict(args))


class JobPage(BaseModel):
    """A page of ``GET /v1/jobs``, newest job first."""

    object: Literal["list"] = "list"
    data: list[JobView]
    has_more: bool
    next_after: str | None = Field(description="pass as `after` for the next page")
