"""Response bodies of the views that build plain dicts, as pydantic models.

The views do not use these models (they were written before the document and six people edit
them); the models describe what they return, and the fuzz run (tests/e2e/test_fuzz.py) checks
every response against them, so a view that drifts from its model fails there.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.api.keys.protocol import KeyView
from shared.db.models import DeliveryStatus
from shared.knowledge.schemas import IntentIn, Lang, ModerationCategory, TenantSettings


class FieldError(BaseModel):
    loc: str = Field(description="dotted path of the offending value; `(body)` for the whole")
    message: str
    type: str = Field(description="pydantic's error type, e.g. `missing`, `string_too_short`")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details (``application/problem+json``). ``type`` is stable per kind of
    problem (``urn:chatq:problem:<slug>``), ``title`` constant per type, ``detail`` about this
    occurrence. Some problems carry extension members (``errors``, ``job_id``, ``limit``, …)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(pattern=r"^urn:chatq:problem:[a-z0-9-]+$")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = Field(
        None, description="validation problems (422): every invalid field"
    )


# --- health -----------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, Literal["up"]]


# --- webhooks ---------------------------------------------------------------------------------


class WebhookDeliveryView(BaseModel):
    id: str = Field(description="the `webhook-id` header of every attempt")
    event_type: str
    url: str
    status: DeliveryStatus
    attempts: int = Field(ge=0)
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None = Field(description="set while the delivery is pending")
    delivered_at: datetime | None
    created_at: datetime


class WebhookDeliveryList(BaseModel):
    data: list[WebhookDeliveryView]


# --- knowledge --------------------------------------------------------------------------------


class DocumentView(BaseModel):
    id: str
    object: Literal["knowledge.document"]
    title: str
    lang: Lang | None
    chars: int = Field(ge=0)
    chunks: int | None = Field(ge=0, description="searchable pieces the text was cut into")
    created_at: datetime
    updated_at: datetime


class DocumentWithText(DocumentView):
    text: str


class DocumentPage(BaseModel):
    object: Literal["list"]
    data: list[DocumentView]
    has_more: bool
    next_after: str | None = Field(description="pass as `after` for the next page")


class FaqView(BaseModel):
    id: str
    object: Literal["knowledge.faq"]
    question: str
    answer: str
    alternatives: list[str]
    lang: Lang | None
    created_at: datetime
    updated_at: datetime


class FaqPage(BaseModel):
    object: Literal["list"]
    data: list[FaqView]
    has_more: bool
    next_after: str | None = Field(description="pass as `after` for the next page")


# --- intents and the tenant -------------------------------------------------------------------


class IntentView(IntentIn):
    """The stored definition (as accepted, unset optional fields left out) with its name."""

    name: str
    object: Literal["intent"]
    created_at: datetime
    updated_at: datetime


class IntentList(BaseModel):
    object: Literal["list"]
    data: list[IntentView]
    has_more: bool


class TenantView(BaseModel):
    name: str
    settings: TenantSettings
    knowledge_version: int = Field(description="moves with every knowledge change")
    documents: int = Field(ge=0)
    faq: int = Field(ge=0)
    intents: int = Field(ge=0)


# --- keys -------------------------------------------------------------------------------------


class KeyList(BaseModel):
    object: Literal["list"]
    data: list[KeyView]
    has_more: bool


# --- moderation -------------------------------------------------------------------------------


class ModerationListView(BaseModel):
    name: str
    object: Literal["moderation.list"]
    category: ModerationCategory
    terms: list[str]
    allow: list[str]
    created_at: datetime
    updated_at: datetime


class ModerationListPage(BaseModel):
    object: Literal["list"]
    data: list[ModerationListView]
    has_more: bool


# --- sessions ---------------------------------------------------------------------------------


class SessionMessage(BaseModel):
    id: uuid.UUID
    object: Literal["session.message"]
    job_id: uuid.UUID
    role: Literal["user", "assistant"]
    content: str = Field(description="as stored: personal data replaced by placeholders")
    created_at: datetime


class SessionMessagePage(BaseModel):
    object: Literal["list"]
    session_id: str
    data: list[SessionMessage]
    has_more: bool


class OpenApiDocument(BaseModel):
    """This document."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
