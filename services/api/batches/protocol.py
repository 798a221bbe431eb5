"""Request bodies, query and answers of the batch endpoints.

A batch comes in two forms, stored and run the same way:

- ``POST /v1/batches``: a JSON-lines body (``application/jsonl`` or ``application/x-ndjson``),
  one ``BatchRequestLine`` a line, as in OpenAI's batch input; the batch's own options
  (``webhook_url``, ``metadata``) are query parameters, since the body is the jobs alone.
- ``POST /v1/jobs/batch``: one JSON object, ``JobBatchCreate``: the jobs and the options.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from services.api.jobs.protocol import (
    DEFAULT_JOB_PAGE,
    MAX_JOB_PAGE,
    MAX_METADATA_BYTES,
    JobCreate,
    JobCursor,
    OneQueryValue,
    StrictModel,
)
from shared.batch_view import BatchView
from shared.db.models import BatchStatus

# The JSON form is one document parsed at once (and bounded by CHATQ_MAX_REQUEST_BYTES); bigger
# batches go as JSON lines to POST /v1/batches, up to CHATQ_MAX_BATCH_JOBS.
MAX_JSON_BATCH_JOBS = 1000
MAX_CUSTOM_ID_LENGTH = 128
JSON_LINES_MEDIA_TYPES = ("application/jsonl", "application/x-ndjson")
JSON_LINES = JSON_LINES_MEDIA_TYPES[0]


class BatchOptions(StrictModel):
    """What belongs to the batch rather than to one of its jobs."""

    webhook_url: str | None = Field(
        None,
        min_length=1,
        max_length=2048,
        description="receives `batch.completed` (or `batch.cancelled`) once every job has ended",
    )
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value)) > MAX_METADATA_BYTES:
            raise ValueError(f"must serialise to at most {MAX_METADATA_BYTES} bytes of JSON")
        return value

    @model_validator(mode="after")
    def _no_webhook_blank(self) -> BatchOptions:
        if self.webhook_url is not None and not self.webhook_url.strip():
            raise ValueError("webhook_url must not be blank")
        return self


class JobBatchCreate(BatchOptions):
    """The body of ``POST /v1/jobs/batch``: the jobs (each a ``POST /v1/jobs`` body) and the
    batch's options. Results list the jobs in this order."""

    jobs: list[JobCreate] = Field(min_length=1, max_length=MAX_JSON_BATCH_JOBS)


class BatchRequestLine(StrictModel):
    """One line of ``POST /v1/batches``: the caller's name for the job and its
    ``POST /v1/jobs`` body. ``method`` and ``url`` may be given as OpenAI's batch lines have
    them; only ``POST /v1/jobs`` is batched."""

    custom_id: str = Field(
        min_length=1,
        max_length=MAX_CUSTOM_ID_LENGTH,
        description="unique within the batch; the results name each job by it",
    )
    body: JobCreate
    method: Literal["POST"] = "POST"
    url: Literal["/v1/jobs"] = "/v1/jobs"


class BatchQuery(BaseModel):
    """The query string of ``POST /v1/batches``: the batch's options, since its body holds only
    jobs. ``metadata`` is a JSON object, URL-encoded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook_url: Annotated[str | None, OneQueryValue] = None
    metadata: Annotated[str | None, OneQueryValue] = None

    @classmethod
    def from_query(cls, args: Mapping[str, list[str]]) -> BatchOptions:
        """Raises pydantic's ``ValidationError`` (a 422 naming each bad parameter)."""
        query = cls.model_validate(dict(args))
        metadata: object = {}
        if query.metadata is not None:
            try:
                metadata = json.loads(query.metadata)
            except ValueError:
                metadata = query.metadata  # not JSON: refused below as not an object
        return BatchOptions.model_validate(
            {"webhook_url": query.webhook_url, "metadata": metadata}, strict=True
        )


class BatchListQuery(BaseModel):
    """The query string of ``GET /v1/batches``: ``status`` (repeatable), ``limit``, ``after``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: frozenset[BatchStatus] = Field(
        frozenset(), description="any of these statuses; repeat the parameter for several"
    )
    limit: Annotated[int, Field(ge=1, le=MAX_JOB_PAGE), OneQueryValue] = DEFAULT_JOB_PAGE
    after: Annotated[JobCursor | None, BeforeValidator(JobCursor.decode), OneQueryValue] = None

    @classmethod
    def from_query(cls, args: Mapping[str, list[str]]) -> BatchListQuery:
        """Raises pydantic's ``ValidationError`` (a 422 naming each bad parameter)."""
        return cls.model_validate(dict(args))


class BatchPage(BaseModel):
    """A page of ``GET /v1/batches``, newest batch first."""

    object: Literal["list"] = "list"
    data: list[BatchView]
    has_more: bool
    next_after: str | None = Field(description="pass as `after` for the next page")
