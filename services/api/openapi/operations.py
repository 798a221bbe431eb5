"""What the document says about each route, keyed by the Flask endpoint name.

The routes themselves (paths, methods, path parameters) and whether a route needs a key (and
which scope) are read from the app (``document.py``); this table adds what Flask cannot know:
the pydantic models of request and response bodies, query and header parameters, and the
statuses a route answers besides the ones every route of its kind shares. A route missing here
still appears in the document, marked ``x-undocumented``; tests/unit/test_openapi.py fails on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from services.api.batches.protocol import (
    JSON_LINES,
    BatchPage,
    BatchRequestLine,
    JobBatchCreate,
)
from services.api.chat.completions import ChatCompletion, ChatCompletionRequest
from services.api.chat.protocol import ChatRequest
from services.api.feedback.protocol import FeedbackCreate, FeedbackView
from services.api.jobs.protocol import (
    CURSOR_PATTERN,
    DEFAULT_JOB_PAGE,
    MAX_JOB_PAGE,
    SESSION_ID_PATTERN,
    JobCreate,
    JobPage,
)
from services.api.jobs.service import MAX_IDEMPOTENCY_KEY_LENGTH
from services.api.keys.protocol import IssuedKeyView, KeyCreate, KeyRotate, KeyView
from services.api.knowledge.service import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from services.api.models.protocol import ModelVersionList, ModelVersionView
from services.api.openapi.responses import (
    DocumentPage,
    DocumentView,
    DocumentWithText,
    FaqPage,
    FaqView,
    Health,
    IntentList,
    IntentView,
    KeyList,
    ModerationListPage,
    ModerationListView,
    OpenApiDocument,
    Readiness,
    SessionMessagePage,
    TenantView,
    WebhookDeliveryList,
)
from services.api.operator.protocol import DashboardWindow, OperatorDashboard
from services.api.sessions.views import DEFAULT_PAGE as DEFAULT_MESSAGE_PAGE
from services.api.sessions.views import MAX_PAGE as MAX_MESSAGE_PAGE
from shared.batch_view import BatchView
from shared.config import Settings
from shared.db.models import BatchStatus, JobStatus
from shared.job_view import JobView
from shared.knowledge.schemas import (
    EXTERNAL_ID_PATTERN,
    INTENT_NAME_PATTERN,
    DocumentIn,
    FaqIn,
    IntentIn,
    TenantSettings,
)
from shared.model_versions import VERSION_NAME_PATTERN
from shared.moderation.tenant_lists import LIST_NAME_PATTERN, ModerationListIn

Schema = dict[str, Any]


def _anchored(pattern: str) -> str:
    # the app matches ids with fullmatch; JSON Schema's pattern searches, so anchor it
    return f"^(?:{pattern})$"


UUID = {"type": "string", "format": "uuid"}
EXTERNAL_ID = {"type": "string", "pattern": _anchored(EXTERNAL_ID_PATTERN.pattern)}
INTENT_NAME = {"type": "string", "pattern": _anchored(INTENT_NAME_PATTERN.pattern)}
LIST_NAME = {"type": "string", "pattern": _anchored(LIST_NAME_PATTERN.pattern)}
MODEL_VERSION_NAME = {"type": "string", "pattern": _anchored(VERSION_NAME_PATTERN)}
SESSION_ID = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": SESSION_ID_PATTERN}


@dataclass(frozen=True)
class Parameter:
    name: str
    where: Literal["query", "header"]
    description: str
    # a schema, or one made from the settings (bounds that are configuration)
    schema: Schema | Callable[[Settings], Schema]
    required: bool = False


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: where a value of this response is used next (a client's next call, and
    the fuzzer's way from a created resource to the routes that read it)."""

    operation_id: str
    parameters: dict[str, str]  # parameter name → runtime expression, e.g. $response.body#/id


@dataclass(frozen=True)
class Reply:
    """A success response: its body model (None: no body), the headers and links it carries."""

    model: type[BaseModel] | None
    description: str
    headers: tuple[str, ...] = ()
    links: dict[str, Link] = field(default_factory=dict)
    # a plain-text body of this media type: instead of a model's JSON, or (with a model) when
    # the request asks for it (``stream: true`` answers text/event-stream)
    text: str | None = None


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    replies: dict[int, Reply]
    # statuses this route answers with a problem, beyond those of every route of its kind
    problems: dict[int, str] = field(default_factory=dict)
    body: type[BaseModel] | None = None
    body_required: bool = True
    # a JSON-lines type (application/jsonl): the body is lines of the ``body`` model
    body_media_type: str = "application/json"
    path: dict[str, Schema] = field(default_factory=dict)
    parameters: tuple[Parameter, ...] = ()
    description: str | None = None


def _wait_schema(settings: Settings) -> Schema:
    return {"type": "number", "minimum": 0, "maximum": settings.max_long_poll_s}


IDEMPOTENCY_KEY = Parameter(
    "Idempotency-Key",
    "header",
    "The same key and body return the same job; the same key with another body is 409.",
    {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
)
KNOWLEDGE_PAGE = (
    Parameter(
        "limit",
        "query",
        "Page size.",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
    ),
    Parameter("after", "query", "The `next_after` of the previous page.", EXTERNAL_ID),
)

JOB = Reply(JobView, "The job.")
JOB_ID = {"job_id": "$response.body#/id"}
SESSION_ID_OF_JOB = {"external_id": "$response.body#/session_id"}
JOB_LINKS = {
    "GetJob": Link("jobs.get_job", JOB_ID),
    "CancelJob": Link("jobs.cancel", JOB_ID),
    "GetWebhookDeliveries": Link("webhooks.deliveries", JOB_ID),
    "ResendWebhooks": Link("webhooks.resend", JOB_ID),
    "GetSessionMessages": Link("sessions.list_messages", SESSION_ID_OF_JOB),
    "DeleteSession": Link("sessions.delete_session", SESSION_ID_OF_JOB),
}
KEY_ID = {"key_id": "$response.body#/id"}
KEY_LINKS = {"RevokeKey": Link("keys.revoke", KEY_ID), "RotateKey": Link("keys.rotate", KEY_ID)}
NO_CONTENT = Reply(None, "Deleted.")
NO_JOB = "No such job (another tenant's jobs are unknown too)."
BATCH_ID = {"batch_id": "$response.body#/id"}
BATCH_LINKS = {
    "GetBatch": Link("batches.get_batch", BATCH_ID),
    "GetBatchResults": Link("batches.batch_results", BATCH_ID),
    "CancelBatch": Link("batches.cancel", BATCH_ID),
}
NO_BATCH = "No such batch (another tenant's batches are unknown too)."
BATCH_IDEMPOTENCY_KEY = Parameter(
    "Idempotency-Key",
    "header",
    "The same key and batch return the same batch; the same key with another batch is 409.",
    {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
)

OPERATIONS: dict[str, Operation] = {
    # --- jobs ---------------------------------------------------------------------------------
    "jobs.create_job": Operation(
        "Submit a chat job",
        "jobs",
        {202: Reply(JobView, "Accepted: queued for inference.", ("Location",), JOB_LINKS)},
        {409: "The Idempotency-Key was used with another body."},
        body=JobCreate,
        parameters=(IDEMPOTENCY_KEY,),
        description="The job is stored before the answer; poll it or wait for its webhook.",
    ),
    "jobs.list_jobs": Operation(
        "List the tenant's jobs, newest first",
        "jobs",
        {200: Reply(JobPage, "A page of jobs, newest first.")},
        {422: "An invalid query parameter or `after`: `errors` names each."},
        parameters=(
            Parameter(
                "status",
                "query",
                "Only jobs in one of these statuses; repeat it for several "
                "(`status=queued&status=in_progress`).",
                {"type": "array", "items": {"enum": [status.value for status in JobStatus]}},
            ),
            Parameter("session_id", "query", "Only the jobs of this session.", SESSION_ID),
            Parameter(
                "created_after",
                "query",
                "Only jobs created after this RFC 3339 time (exclusive).",
                {"type": "string", "format": "date-time"},
            ),
            Parameter(
                "created_before",
                "query",
                "Only jobs created before this RFC 3339 time (exclusive).",
                {"type": "string", "format": "date-time"},
            ),
            Parameter(
                "limit",
                "query",
                "Page size.",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_JOB_PAGE,
                    "default": DEFAULT_JOB_PAGE,
                },
            ),
            Parameter(
                "after",
                "query",
                "The `next_after` of the previous page (opaque).",
                {"type": "string", "pattern": CURSOR_PATTERN},
            ),
        ),
    ),
    "jobs.get_job": Operation(
        "Read a job, optionally waiting until it is finished",
        "jobs",
        {200: JOB},
        {404: NO_JOB},
        path={"job_id": UUID},
        parameters=(
            Parameter(
                "wait",
                "query",
                "Hold the request up to this many seconds until the job is terminal.",
                _wait_schema,
            ),
        ),
    ),
    "jobs.cancel": Operation(
        "Cancel a queued or running job",
        "jobs",
        {200: Reply(JobView, "The cancelled job.")},
        {404: NO_JOB, 409: "The job has already finished."},
        path={"job_id": UUID},
    ),
    "feedback.give_feedback": Operation(
        "Rate a job's answer (and say what it should have been)",
        "jobs",
        {
            201: Reply(FeedbackView, "Stored: the job's first feedback."),
            200: Reply(FeedbackView, "Stored: it replaced the job's earlier feedback."),
        },
        {
            404: NO_JOB,
            409: "The job is not completed, or its texts were erased.",
        },
        body=FeedbackCreate,
        path={"job_id": UUID},
        description=(
            "One feedback per job; giving it again replaces it. `rating` is a thumb (-1/+1) or "
            "stars (1-5); `scale` says which when the value is 1 (default: thumbs for -1 and 1, "
            "stars for 2-5). A `corrected_answer` becomes training data "
            "(`chatq feedback export`)."
        ),
    ),
    "feedback.read_feedback": Operation(
        "A job's feedback",
        "jobs",
        {200: Reply(FeedbackView, "The job's feedback.")},
        {404: "No such job, or it has no feedback."},
        path={"job_id": UUID},
    ),
    "models.list_versions": Operation(
        "The model versions workers may serve (operator)",
        "models",
        {200: Reply(ModelVersionList, "Every registered version; `active` marks the one served.")},
        {},
        description=(
            "Needs a key with the `operator` scope. With no version active, workers serve "
            "CHATQ_MODEL_DIR (`default_model_dir`). Versions are registered with "
            "`chatq models register` or `chatq train run`."
        ),
    ),
    "models.activate": Operation(
        "Serve this model version (operator)",
        "models",
        {200: Reply(ModelVersionView, "The version, now active.")},
        {404: "No such version.", 409: "Its folder is gone or was not built."},
        path={"name": MODEL_VERSION_NAME},
        description=(
            "Workers load it beside the running model, finish the batch decoding, then switch "
            "(within CHATQ_MODEL_REFRESH_INTERVAL_S); no job is lost or failed."
        ),
    ),
    "models.deactivate": Operation(
        "Serve CHATQ_MODEL_DIR again (operator)",
        "models",
        {200: Reply(ModelVersionList, "The versions, none active.")},
        {},
    ),
    "completions.create": Operation(
        "Chat Completions, as OpenAI's API takes them (for existing OpenAI clients)",
        "jobs",
        {
            200: Reply(
                ChatCompletion,
                "The answer, in the Chat Completions format; with `stream: true`, server-sent "
                "`chat.completion.chunk` events ending with `data: [DONE]`.",
                text="text/event-stream",
            )
        },
        {
            429: "Too many open waits, or the queue or the tenant's share is full.",
            409: "The Idempotency-Key was used with another body.",
            502: "The job failed or expired.",
            504: "No answer in time; the job goes on (`Location`).",
        },
        body=ChatCompletionRequest,
        parameters=(IDEMPOTENCY_KEY,),
        description=(
            "The last message must be the customer's (`user`); earlier `user` and `assistant` "
            "messages are its history; `system` and `developer` messages are accepted but not "
            "applied. `model` is echoed back. The answer carries a `chatq` object: the job id, "
            "route, sources, intent and handoff."
        ),
    ),
    "chat.chat": Operation(
        "Ask and wait for the answer in one request",
        "jobs",
        {
            200: Reply(
                JobView,
                "The completed job; with `stream: true`, server-sent events: `delta` "
                "(`{text}`, the answer as the model generates it), then `done` (the job, whose "
                "`response` is the answer of record) or `error` (a problem).",
                links=JOB_LINKS,
                text="text/event-stream",
            )
        },
        {
            409: "The Idempotency-Key was used with another body.",
            502: "The job ended failed, cancelled or expired.",
            504: "No answer within CHATQ_CHAT_TIMEOUT_S; the job goes on (see `Location`).",
        },
        body=ChatRequest,
        parameters=(IDEMPOTENCY_KEY,),
    ),
    "webhooks.deliveries": Operation(
        "A job's webhook deliveries",
        "jobs",
        {200: Reply(WebhookDeliveryList, "The deliveries, oldest first.")},
        {404: NO_JOB},
        path={"job_id": UUID},
    ),
    "webhooks.resend": Operation(
        "Re-send a job's dead webhook deliveries",
        "jobs",
        {202: Reply(WebhookDeliveryList, "The deliveries that start their schedule again.")},
        {404: NO_JOB, 409: "The job has no dead deliveries."},
        path={"job_id": UUID},
    ),
    # --- batches ------------------------------------------------------------------------------
    "batches.create_batch": Operation(
        "Submit a batch of jobs as JSON lines (as OpenAI's batch input)",
        "batches",
        {202: Reply(BatchView, "Accepted: every job stored.", ("Location",), BATCH_LINKS)},
        {
            409: "The Idempotency-Key was used with another batch.",
            413: "The body is larger than CHATQ_MAX_BATCH_BYTES.",
            415: f"The body is not sent as `{JSON_LINES}` (or `application/x-ndjson`).",
            422: "An invalid line (nothing was stored): `errors` names the first 20 by `line`; "
            "or too many lines, a repeated `custom_id`, an invalid `webhook_url` or `metadata`.",
            429: "Rate limit, or the tenant's unfinished batches would go over its allowance.",
        },
        body=BatchRequestLine,
        body_media_type=JSON_LINES,
        parameters=(
            Parameter(
                "webhook_url",
                "query",
                "Receives `batch.completed` (`batch.cancelled`) once every job has ended.",
                {"type": "string", "minLength": 1, "maxLength": 2048},
            ),
            Parameter(
                "metadata",
                "query",
                "The batch's metadata: a JSON object (URL-encoded), returned with the batch.",
                {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"type": "object"},
                },
            ),
            BATCH_IDEMPOTENCY_KEY,
        ),
        description=(
            'One job a line: `{"custom_id": …, "body": <a POST /v1/jobs body>}` (`method` '
            "and `url` may be given as OpenAI's lines have them: `POST`, `/v1/jobs`); up to "
            "CHATQ_MAX_BATCH_JOBS lines with a `custom_id` each of its own. The batch is "
            "validated whole and stored whole, or refused naming its invalid lines. Its jobs "
            "run at the priority their lines give (default 0) and enter the queue a few at a "
            "time, never crowding out interactive jobs; a job line's own `webhook_url` gets "
            "that job's webhooks, otherwise only the batch's event is sent."
        ),
    ),
    "batches.create_job_batch": Operation(
        "Submit many jobs in one JSON request",
        "batches",
        {202: Reply(BatchView, "Accepted: every job stored.", ("Location",), BATCH_LINKS)},
        {
            409: "The Idempotency-Key was used with another batch.",
            422: "An invalid job (nothing was stored): `errors` lists the first 20.",
            429: "Rate limit, or the tenant's unfinished batches would go over its allowance.",
        },
        body=JobBatchCreate,
        parameters=(BATCH_IDEMPOTENCY_KEY,),
        description=(
            "`jobs` (each a POST /v1/jobs body, up to 1,000) become one batch, read and "
            "answered as one (`GET /v1/batches/{batch_id}`); larger ones go to POST /v1/batches."
        ),
    ),
    "batches.list_batches": Operation(
        "List the tenant's batches, newest first",
        "batches",
        {200: Reply(BatchPage, "A page of batches, newest first, each with its counts.")},
        {422: "An invalid query parameter or `after`: `errors` names each."},
        parameters=(
            Parameter(
                "status",
                "query",
                "Only batches in one of these statuses; repeat it for several.",
                {"type": "array", "items": {"enum": [status.value for status in BatchStatus]}},
            ),
            Parameter(
                "limit",
                "query",
                "Page size.",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_JOB_PAGE,
                    "default": DEFAULT_JOB_PAGE,
                },
            ),
            Parameter(
                "after",
                "query",
                "The `next_after` of the previous page (opaque).",
                {"type": "string", "pattern": CURSOR_PATTERN},
            ),
        ),
    ),
    "batches.get_batch": Operation(
        "Read a batch and its jobs' counts by status",
        "batches",
        {200: Reply(BatchView, "The batch.")},
        {404: NO_BATCH},
        path={"batch_id": UUID},
    ),
    "batches.batch_results": Operation(
        "A batch's jobs as JSON lines, in submission order",
        "batches",
        {
            200: Reply(
                None,
                'One line per job: `{"id", "custom_id", "status", "response"}`, '
                "`response` being the job as GET /v1/jobs/{job_id} shows it. Read at any time: "
                "unfinished jobs show their current status.",
                text=JSON_LINES,
            )
        },
        {404: NO_BATCH},
        path={"batch_id": UUID},
    ),
    "batches.cancel": Operation(
        "Cancel a batch: its queued jobs are cancelled, its running ones finish",
        "batches",
        {200: Reply(BatchView, "The batch, `cancelling` or (nothing was running) `cancelled`.")},
        {404: NO_BATCH, 409: "The batch is not in progress (finished or cancelled already)."},
        path={"batch_id": UUID},
    ),
    # --- sessions -----------------------------------------------------------------------------
    "sessions.list_messages": Operation(
        "A session's stored transcript (anonymised)",
        "sessions",
        {200: Reply(SessionMessagePage, "Oldest turn first.")},
        {400: "Invalid `limit` or `after`.", 404: "No such session."},
        path={"external_id": SESSION_ID},
        parameters=(
            Parameter(
                "limit",
                "query",
                "Page size.",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_MESSAGE_PAGE,
                    "default": DEFAULT_MESSAGE_PAGE,
                },
            ),
            Parameter("after", "query", "The last message id of the previous page.", UUID),
        ),
    ),
    "sessions.delete_session": Operation(
        "Erase a session: its transcript and its jobs' texts",
        "sessions",
        {204: Reply(None, "Erased.")},
        {404: "No such session.", 409: "The session has unfinished jobs."},
        path={"external_id": SESSION_ID},
    ),
    # --- knowledge ----------------------------------------------------------------------------
    "knowledge.put_document": Operation(
        "Create or replace a document (answers once it is searchable)",
        "knowledge",
        {201: Reply(DocumentView, "Created."), 200: Reply(DocumentView, "Replaced.")},
        {422: "Invalid id or body."},
        body=DocumentIn,
        path={"doc_id": EXTERNAL_ID},
    ),
    "knowledge.list_documents": Operation(
        "List documents",
        "knowledge",
        {200: Reply(DocumentPage, "A page of documents, by id.")},
        {400: "Invalid `limit`.", 422: "Invalid `after`."},
        parameters=KNOWLEDGE_PAGE,
    ),
    "knowledge.get_document": Operation(
        "Read a document",
        "knowledge",
        {200: Reply(DocumentWithText, "The document with its text.")},
        {404: "No such document.", 422: "Invalid id."},
        path={"doc_id": EXTERNAL_ID},
    ),
    "knowledge.delete_document": Operation(
        "Delete a document",
        "knowledge",
        {204: NO_CONTENT},
        {404: "No such document.", 422: "Invalid id."},
        path={"doc_id": EXTERNAL_ID},
    ),
    "knowledge.put_faq": Operation(
        "Create or replace an FAQ entry",
        "knowledge",
        {201: Reply(FaqView, "Created."), 200: Reply(FaqView, "Replaced.")},
        {422: "Invalid id or body."},
        body=FaqIn,
        path={"faq_id": EXTERNAL_ID},
    ),
    "knowledge.list_faq": Operation(
        "List FAQ entries",
        "knowledge",
        {200: Reply(FaqPage, "A page of entries, by id.")},
        {400: "Invalid `limit`.", 422: "Invalid `after`."},
        parameters=KNOWLEDGE_PAGE,
    ),
    "knowledge.get_faq": Operation(
        "Read an FAQ entry",
        "knowledge",
        {200: Reply(FaqView, "The entry.")},
        {404: "No such entry.", 422: "Invalid id."},
        path={"faq_id": EXTERNAL_ID},
    ),
    "knowledge.delete_faq": Operation(
        "Delete an FAQ entry",
        "knowledge",
        {204: NO_CONTENT},
        {404: "No such entry.", 422: "Invalid id."},
        path={"faq_id": EXTERNAL_ID},
    ),
    # --- intents and tenant settings ----------------------------------------------------------
    "intents.put_intent": Operation(
        "Create or replace an intent",
        "intents",
        {201: Reply(IntentView, "Created."), 200: Reply(IntentView, "Replaced.")},
        {422: "Invalid name or body."},
        body=IntentIn,
        path={"name": INTENT_NAME},
    ),
    "intents.list_intents": Operation(
        "List intents", "intents", {200: Reply(IntentList, "Every intent, by name.")}
    ),
    "intents.get_intent": Operation(
        "Read an intent",
        "intents",
        {200: Reply(IntentView, "The intent.")},
        {404: "No such intent.", 422: "Invalid name."},
        path={"name": INTENT_NAME},
    ),
    "intents.delete_intent": Operation(
        "Delete an intent",
        "intents",
        {204: NO_CONTENT},
        {404: "No such intent.", 422: "Invalid name."},
        path={"name": INTENT_NAME},
    ),
    "intents.get_tenant": Operation(
        "The key's tenant: settings and knowledge counts",
        "tenant",
        {200: Reply(TenantView, "The tenant.")},
        {404: "The key's tenant no longer exists."},
    ),
    "intents.put_tenant_settings": Operation(
        "Replace the tenant's settings (fallback answer, moderation, PII patterns)",
        "tenant",
        {200: Reply(TenantView, "The tenant with its new settings.")},
        body=TenantSettings,
    ),
    # --- moderation ---------------------------------------------------------------------------
    "moderation.put_list": Operation(
        "Create or replace one of the tenant's moderation lists",
        "moderation",
        {201: Reply(ModerationListView, "Created."), 200: Reply(ModerationListView, "Replaced.")},
        {422: "Invalid name or body."},
        body=ModerationListIn,
        path={"name": LIST_NAME},
    ),
    "moderation.list_lists": Operation(
        "List the tenant's moderation lists",
        "moderation",
        {200: Reply(ModerationListPage, "Every list, by name.")},
    ),
    "moderation.get_list": Operation(
        "Read a moderation list",
        "moderation",
        {200: Reply(ModerationListView, "The list.")},
        {404: "No such list.", 422: "Invalid name."},
        path={"name": LIST_NAME},
    ),
    "moderation.delete_list": Operation(
        "Delete a moderation list",
        "moderation",
        {204: NO_CONTENT},
        {404: "No such list.", 422: "Invalid name."},
        path={"name": LIST_NAME},
    ),
    # --- keys ---------------------------------------------------------------------------------
    "keys.get_keys": Operation(
        "List the tenant's keys", "keys", {200: Reply(KeyList, "Every key, without secrets.")}
    ),
    "keys.post_key": Operation(
        "Issue a key in the caller's tenant",
        "keys",
        {201: Reply(IssuedKeyView, "The key and secrets, shown once.", ("Location",), KEY_LINKS)},
        body=KeyCreate,
    ),
    "keys.revoke": Operation(
        "Revoke a key (it stops working within CHATQ_KEY_CACHE_TTL_S)",
        "keys",
        {200: Reply(KeyView, "The revoked key.")},
        {404: "No such key in this tenant."},
        path={"key_id": UUID},
    ),
    "keys.rotate": Operation(
        "Issue a successor; the old key works until its grace period ends",
        "keys",
        {201: Reply(IssuedKeyView, "The new key, shown once.", ("Location",), KEY_LINKS)},
        {404: "No such key in this tenant.", 409: "The key is revoked or expired."},
        body=KeyRotate,
        body_required=False,
        path={"key_id": UUID},
    ),
    # --- operations ---------------------------------------------------------------------------
    "health.healthz": Operation("Liveness", "health", {200: Reply(Health, "The process answers.")}),
    "health.readyz": Operation(
        "Readiness: the database and the broker are reachable",
        "health",
        {200: Reply(Readiness, "Ready.")},
        {503: "A dependency is unreachable (`checks` names it)."},
    ),
    "metrics.metrics": Operation(
        "Prometheus metrics of every API process, with queue depths and backlogs",
        "health",
        {200: Reply(None, "The Prometheus text exposition format.", text="text/plain")},
    ),
    "openapi.docs": Operation(
        "This document as an HTML page to read",
        "meta",
        {200: Reply(None, "The API reference, rendered on the server.", text="text/html")},
    ),
    "openapi.document": Operation(
        "This document", "meta", {200: Reply(OpenApiDocument, "OpenAPI 3.1.")}
    ),
    # --- the operator dashboard ---------------------------------------------------------------
    "operator.page": Operation(
        "The operator dashboard: a page that asks for an operator key and draws its data",
        "operator",
        {200: Reply(None, "The page; it holds no data until given a key.", text="text/html")},
    ),
    "operator.dashboard": Operation(
        "What the operator dashboard draws, over every tenant",
        "operator",
        {200: Reply(OperatorDashboard, "Queues, throughput, latency, routes, recent jobs.")},
        {422: "An invalid or repeated `window`, or an unknown parameter."},
        parameters=(
            Parameter(
                "window",
                "query",
                "How far back the plots reach.",
                {"enum": [window.value for window in DashboardWindow], "default": "1h"},
            ),
        ),
    ),
}
