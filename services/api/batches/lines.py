"""Reading a batch's jobs, all of them or none: every line is checked before anything is
stored, and a batch with any invalid line is refused (422) naming its lines, the first
``MAX_LISTED_ERRORS`` problems in full and how many lines were invalid in all.

A line is checked as ``POST /v1/jobs`` checks its body (strict types, unknown fields refused,
no NUL characters nor non-finite numbers, webhook URLs that may be called), plus what only a
batch has: a ``custom_id`` of its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pydantic_core
from pydantic import ValidationError

from services.api.batches.protocol import BatchOptions, BatchRequestLine, JobBatchCreate
from services.api.jobs.protocol import JobCreate
from services.api.problems import Problem, ProblemType
from services.api.request_body import refuse_unstorable_values
from shared.config import Settings
from shared.webhook_urls import WebhookUrlError, check_webhook_url

MAX_LISTED_ERRORS = 20


@dataclass(frozen=True)
class BatchJobIn:
    """One job of a batch as the caller sent it."""

    custom_id: str | None  # None for the jobs of POST /v1/jobs/batch
    job: JobCreate


@dataclass(frozen=True)
class BatchIn:
    """A whole batch, every part of it valid."""

    jobs: list[BatchJobIn]
    options: BatchOptions
    # same endpoint, jobs and options → same fingerprint (the Idempotency-Key's check)
    fingerprint: str


@dataclass
class LineErrors:
    """The problems found in a batch's lines: the first few in full, and which lines had any.
    Lines are numbered from 1 (JSON lines); ``by_line=False`` names jobs of a JSON array by
    their ``loc`` alone (``jobs.3.webhook_url``)."""

    by_line: bool = True
    listed: list[dict[str, object]] = field(default_factory=list)
    lines: set[int] = field(default_factory=set)

    def add(self, line: int, loc: str, message: str, kind: str) -> None:
        self.lines.add(line)
        if len(self.listed) < MAX_LISTED_ERRORS:
            where = {"line": line} if self.by_line else {}
            self.listed.append({**where, "loc": loc, "message": message, "type": kind})

    def add_validation_error(self, line: int, error: ValidationError) -> None:
        for item in error.errors(include_url=False, include_input=False):
            loc = ".".join(str(part) for part in item["loc"]) or "(line)"
            kind = item["type"]
            message = "not valid JSON" if kind == "json_invalid" else item["msg"]
            self.add(line, loc, message, kind)

    def raise_if_any(self, jobs: int) -> None:
        if not self.lines:
            return
        shown = "; ".join(
            f"line {e['line']}: {e['loc']}: {e['message']}"
            if self.by_line
            else f"{e['loc']}: {e['message']}"
            for e in self.listed
        )
        noun = "lines" if self.by_line else "jobs"
        raise Problem(
            ProblemType.VALIDATION_ERROR,
            f"{len(self.lines)} of {jobs} {noun} are invalid; nothing was stored. {shown}",
            errors=self.listed,
            invalid_lines=len(self.lines),
        )


def read_json_lines(raw: bytes, options: BatchOptions, settings: Settings) -> BatchIn:
    """The jobs of a ``POST /v1/batches`` body; raises a 422 ``Problem`` unless all are valid.

    Blank lines (a trailing newline, say) are skipped; line numbers count every line."""
    numbered = [(number, line) for number, line in _lines(raw) if line.strip()]
    if not numbered:
        raise Problem(ProblemType.VALIDATION_ERROR, "The batch holds no jobs: send one per line.")
    if len(numbered) > settings.max_batch_jobs:
        raise Problem(
            ProblemType.VALIDATION_ERROR,
            f"The batch holds {len(numbered)} jobs; at most {settings.max_batch_jobs} "
            "(CHATQ_MAX_BATCH_JOBS) are taken at once: split it.",
            jobs=len(numbered),
            limit=settings.max_batch_jobs,
        )
    errors = LineErrors()
    jobs: list[tuple[int, BatchJobIn]] = []
    first_line_of: dict[str, int] = {}
    for number, line in numbered:
        parsed = _read_line(number, line, settings, errors)
        if parsed is None:
            continue
        earlier = first_line_of.setdefault(parsed.custom_id, number)
        if earlier != number:
            errors.add(
                number,
                "custom_id",
                f"{parsed.custom_id!r} is already the custom_id of line {earlier}",
                "custom_id_duplicate",
            )
            continue
        jobs.append((number, BatchJobIn(parsed.custom_id, parsed.body)))
    _check_job_webhooks(jobs, settings, errors, loc="body.webhook_url")
    errors.raise_if_any(len(numbered))
    batch = [job for _number, job in jobs]
    return BatchIn(batch, options, _fingerprint("batches", batch, options))


def read_job_batch(body: JobBatchCreate, settings: Settings) -> BatchIn:
    """The jobs of a ``POST /v1/jobs/batch`` body (already validated as JSON), once their
    webhook URLs are known to be callable."""
    if len(body.jobs) > settings.max_batch_jobs:
        raise Problem(
            ProblemType.VALIDATION_ERROR,
            f"The batch holds {len(body.jobs)} jobs; at most {settings.max_batch_jobs} "
            "(CHATQ_MAX_BATCH_JOBS) are taken at once: split it.",
            jobs=len(body.jobs),
            limit=settings.max_batch_jobs,
        )
    jobs = [(index, BatchJobIn(None, job)) for index, job in enumerate(body.jobs)]
    errors = LineErrors(by_line=False)
    _check_job_webhooks(jobs, settings, errors, loc="jobs.{}.webhook_url")
    errors.raise_if_any(len(jobs))
    options = BatchOptions(webhook_url=body.webhook_url, metadata=body.metadata)
    batch = [job for _number, job in jobs]
    return BatchIn(batch, options, _fingerprint("jobs/batch", batch, options))


def capped_validation_problem(error: ValidationError) -> Problem:
    """The 422 of an invalid ``POST /v1/jobs/batch`` body, listing at most
    ``MAX_LISTED_ERRORS`` errors however many of its jobs are invalid."""
    items = error.errors(include_url=False, include_input=False)
    if any(item["type"] == "json_invalid" for item in items):
        return Problem(ProblemType.INVALID_JSON, "The request body is not valid JSON.")
    listed = [
        {
            "loc": ".".join(str(part) for part in item["loc"]) or "(body)",
            "message": item["msg"],
            "type": item["type"],
        }
        for item in items[:MAX_LISTED_ERRORS]
    ]
    shown = "; ".join(f"{item['loc']}: {item['message']}" for item in listed)
    return Problem(
        ProblemType.VALIDATION_ERROR,
        f"{len(items)} errors; nothing was stored. {shown}",
        errors=listed,
        error_count=len(items),
    )


def check_batch_webhook(options: BatchOptions, settings: Settings) -> None:
    """422 unless the batch's own webhook URL may be called."""
    if options.webhook_url is None:
        return
    try:
        check_webhook_url(
            options.webhook_url,
            allow_private=settings.webhook_allow_private,
            resolve_timeout_s=settings.webhook_resolve_timeout_s,
        )
    except WebhookUrlError as error:
        raise Problem(ProblemType.INVALID_WEBHOOK_URL, f"webhook_url {error}.") from None


def _lines(raw: bytes) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(raw.split(b"\n"), start=1):
        yield number, line.removesuffix(b"\r")


def _read_line(
    number: int, line: bytes, settings: Settings, errors: LineErrors
) -> BatchRequestLine | None:
    try:
        document = pydantic_core.from_json(line, allow_inf_nan=True)
    except ValueError:
        errors.add(number, "(line)", "not valid JSON", "json_invalid")
        return None
    try:
        refuse_unstorable_values(document)
    except Problem as unstorable:
        for item in unstorable.extensions["errors"]:
            errors.add(number, str(item["loc"]), str(item["message"]), str(item["type"]))
        return None
    try:
        return BatchRequestLine.model_validate_json(
            line, strict=True, context={"settings": settings}
        )
    except ValidationError as invalid:
        errors.add_validation_error(number, invalid)
        return None


def _check_job_webhooks(
    jobs: Iterable[tuple[int, BatchJobIn]], settings: Settings, errors: LineErrors, *, loc: str
) -> None:
    """Each distinct webhook URL is checked once (a check may wait for DNS). ``loc`` names the
    field in an error, ``{}`` standing for the job's place."""
    verdicts: dict[str, str | None] = {}
    for number, batch_job in jobs:
        url = batch_job.job.webhook_url
        if url is None:
            continue
        if url not in verdicts:
            try:
                check_webhook_url(
                    url,
                    allow_private=settings.webhook_allow_private,
                    resolve_timeout_s=settings.webhook_resolve_timeout_s,
                )
                verdicts[url] = None
            except WebhookUrlError as error:
                verdicts[url] = f"webhook_url {error}"
        refused = verdicts[url]
        if refused is not None:
            errors.add(number, loc.format(number), refused, "webhook_url_refused")


def _fingerprint(endpoint: str, jobs: list[BatchJobIn], options: BatchOptions) -> str:
    digest = hashlib.sha256(f"{endpoint}\n{options.model_dump_json()}\n".encode())
    for batch_job in jobs:
        digest.update(f"{batch_job.custom_id or ''}\n{batch_job.job.model_dump_json()}\n".encode())
    return digest.hexdigest()
