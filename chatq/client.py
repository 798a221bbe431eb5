"""A Python client for chatq's HTTP API, sync (``ChatqClient``) and asyncio
(``AsyncChatqClient``), with typed results (``Job``: the job view the API returns).

    with ChatqClient("http://127.0.0.1:8000", api_key) as chatq:
        job = chatq.submit("How do I reset my router?", session_id="customer-42")
        job = chatq.wait(job.id)
        print(job.status, job.route, job.response)

What it takes care of:

- **Retries.** ``429`` and ``503`` answers are retried after the ``Retry-After`` they carry (else
  with exponential backoff), up to ``max_retries`` times, and so are connection failures.
  A submission carries an ``Idempotency-Key`` (one is made when the caller gives none), so a
  retried submission never makes a second job.
- **Streaming.** ``chat_stream`` yields the answer's text as the model generates it, then the
  completed job.
- **Waiting.** ``wait`` long-polls ``GET /v1/jobs/{id}?wait=…`` until the job is finished.
- **Errors.** Any other refusal raises ``ChatqError`` with the problem details the API sent.
- **Webhooks.** ``verify_webhook(headers, body, secret)`` checks a delivery's Standard Webhooks
  signature and returns the event.
- **Batches.** ``batch(jobs)`` submits up to 1,000 jobs as one batch (stored whole or refused
  whole); ``wait_batch`` waits for it to end and ``batch_results`` reads its jobs in order.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from standardwebhooks import Webhook

from shared.batch_view import BatchResultLine, BatchView
from shared.db.models import JobStatus
from shared.job_view import JobView as Job

__all__ = [
    "AsyncChatqClient",
    "BatchResultLine",
    "BatchView",
    "ChatStreamEvent",
    "ChatqClient",
    "ChatqError",
    "Job",
    "verify_webhook",
]

RETRIED_STATUSES = frozenset({429, 503})
TERMINAL = frozenset(status for status in JobStatus if status.is_terminal)
LONG_POLL_S = 30.0
BATCH_POLL_S = 2.0


class ChatqError(Exception):
    """A refusal from the API: its status and problem details (``type``, ``detail``, …)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}")


@dataclass(frozen=True)
class _Call:
    """One API call as both clients make it."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] | None = None

    def args(self) -> tuple[str, str]:
        return self.method, self.path

    def kwargs(self) -> dict[str, Any]:
        return {"json": self.body, "params": self.params, "headers": self.headers}


def _submission(
    query: str,
    idempotency_key: str | None,
    endpoint: str,
    fields: Mapping[str, Any],
) -> _Call:
    body = {"query": query, **{name: value for name, value in fields.items() if value is not None}}
    key = idempotency_key or uuid.uuid4().hex  # retries of this call reuse it
    return _Call("POST", endpoint, body=body, headers={"Idempotency-Key": key})


def _feedback(
    job_id: uuid.UUID | str,
    rating: int,
    scale: str | None,
    comment: str | None,
    corrected_answer: str | None,
) -> _Call:
    fields = {"scale": scale, "comment": comment, "corrected_answer": corrected_answer}
    body = {"rating": rating, **{name: value for name, value in fields.items() if value}}
    return _Call("POST", f"/v1/jobs/{job_id}/feedback", body=body)


def _listing(
    status: list[str] | None, session_id: str | None, limit: int, after: str | None
) -> _Call:
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    if session_id is not None:
        params["session_id"] = session_id
    if after is not None:
        params["after"] = after
    return _Call("GET", "/v1/jobs", params=params)


def _job_batch(
    jobs: list[Mapping[str, Any]],
    webhook_url: str | None,
    metadata: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> _Call:
    body: dict[str, Any] = {"jobs": [dict(job) for job in jobs]}
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    if metadata:
        body["metadata"] = dict(metadata)
    key = idempotency_key or uuid.uuid4().hex  # retries of this call reuse it
    return _Call("POST", "/v1/jobs/batch", body=body, headers={"Idempotency-Key": key})


def _retry_delay(
    response: httpx.Response | None, attempt: int, max_retries: int, backoff_s: float
) -> float | None:
    """How long to wait before trying again; None: this answer (or failure) is the result.
    ``response`` is None when the request failed on its way (connection refused or reset)."""
    if attempt >= max_retries or (response is not None and not _retryable(response)):
        return None
    if response is not None:
        retry_after = response.headers.get("Retry-After", "")
        if retry_after.isdigit():
            return float(retry_after)
    return backoff_s * (2**attempt) * (0.5 + random.random() / 2)


def _result(response: httpx.Response | None, failure: Exception | None) -> Any:
    if response is None:
        assert failure is not None
        raise failure
    if response.is_success:
        if response.headers.get("content-type", "").startswith("application/jsonl"):
            return [json.loads(line) for line in response.text.splitlines() if line]
        return response.json() if response.content else None
    try:
        problem = response.json()
    except json.JSONDecodeError:
        problem = {"title": response.reason_phrase, "detail": response.text[:500]}
    raise ChatqError(response.status_code, problem)


@dataclass(frozen=True)
class ChatStreamEvent:
    """One event of ``chat_stream``: more of the answer (``text``), or, last, the completed
    job (``job``; its ``response`` is the answer of record, after output moderation)."""

    text: str = ""
    job: Job | None = None


class _ServerSentEvents:
    """Lines of a ``text/event-stream`` body → (event name, JSON data)."""

    def __init__(self) -> None:
        self.name = "message"

    def feed(self, line: str) -> tuple[str, Any] | None:
        if line.startswith("event:"):
            self.name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            name, self.name = self.name, "message"
            return name, json.loads(line.removeprefix("data:").strip())
        return None


def _stream_event(name: str, data: Any, status: int) -> ChatStreamEvent:
    if name == "delta":
        return ChatStreamEvent(text=data["text"])
    if name == "done":
        return ChatStreamEvent(job=Job.model_validate(data))
    raise ChatqError(data.get("status", status), data)  # an "error" event: a problem


def _retryable(response: httpx.Response) -> bool:
    return response.status_code in RETRIED_STATUSES


class _Client:
    """What the sync and the asyncio clients share: the key, the timeout, the retry policy."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = LONG_POLL_S + 30,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        transport: Any = None,
    ) -> None:
        """``transport``: an httpx transport (sync or async, as the client) to talk through."""
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._options: dict[str, Any] = {
            "base_url": base_url,
            "headers": {"Authorization": f"Bearer {api_key}"},
            "timeout": timeout_s,
            "transport": transport,
        }


class ChatqClient(_Client):
    def __init__(self, base_url: str, api_key: str, **options: Any) -> None:
        super().__init__(base_url, api_key, **options)
        self._http = httpx.Client(**self._options)

    def __enter__(self) -> ChatqClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call) -> Any:
        for attempt in itertools.count():
            try:
                response, failure = self._http.request(*call.args(), **call.kwargs()), None
            except httpx.TransportError as error:
                response, failure = None, error
            delay = _retry_delay(response, attempt, self.max_retries, self.backoff_s)
            if delay is None:
                break
            time.sleep(delay)
        return _result(response, failure)

    def submit(self, query: str, *, idempotency_key: str | None = None, **fields: Any) -> Job:
        """``POST /v1/jobs`` (fields: ``session_id``, ``history``, ``params``, ``metadata``,
        ``webhook_url``, ``priority``, ``deadline_s``): the queued job."""
        return Job.model_validate(
            self._send(_submission(query, idempotency_key, "/v1/jobs", fields))
        )

    def chat(self, query: str, *, idempotency_key: str | None = None, **fields: Any) -> Job:
        """``POST /v1/chat``: submit and wait in one request; the completed job."""
        return Job.model_validate(
            self._send(_submission(query, idempotency_key, "/v1/chat", fields))
        )

    def chat_stream(
        self, query: str, *, idempotency_key: str | None = None, **fields: Any
    ) -> Iterator[ChatStreamEvent]:
        """``POST /v1/chat`` with ``stream: true``: the answer's text as the model generates
        it, then the completed job. Not retried once the stream has begun (a refusal before it,
        such as ``429``, raises ``ChatqError``)."""
        call = _submission(query, idempotency_key, "/v1/chat", {**fields, "stream": True})
        with self._http.stream(*call.args(), **call.kwargs()) as response:
            if not response.is_success:
                response.read()
                _result(response, None)
            events = _ServerSentEvents()
            for line in response.iter_lines():
                parsed = events.feed(line)
                if parsed is not None:
                    yield _stream_event(*parsed, response.status_code)

    def get(self, job_id: uuid.UUID | str, *, wait_s: float | None = None) -> Job:
        params = {"wait": wait_s} if wait_s else None
        return Job.model_validate(self._send(_Call("GET", f"/v1/jobs/{job_id}", params=params)))

    def wait(self, job_id: uuid.UUID | str, *, timeout_s: float = 300.0) -> Job:
        """The job once it is finished (completed, failed, expired or cancelled)."""
        give_up_at = time.monotonic() + timeout_s
        while True:
            left = give_up_at - time.monotonic()
            job = self.get(job_id, wait_s=max(1.0, min(LONG_POLL_S, left)))
            if job.status in TERMINAL:
                return job
            if left <= 0:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout_s:g} s")

    def cancel(self, job_id: uuid.UUID | str) -> Job:
        return Job.model_validate(self._send(_Call("POST", f"/v1/jobs/{job_id}/cancel")))

    def feedback(
        self,
        job_id: uuid.UUID | str,
        rating: int,
        *,
        scale: str | None = None,
        comment: str | None = None,
        corrected_answer: str | None = None,
    ) -> dict[str, Any]:
        """Rate a completed job's answer: -1/+1, or 1-5 with ``scale="stars"`` (2-5 need no
        scale); giving it again replaces it. Returns the stored feedback."""
        call = _feedback(job_id, rating, scale, comment, corrected_answer)
        return self._send(call)

    def jobs(
        self, *, status: list[str] | None = None, session_id: str | None = None, page: int = 100
    ) -> Iterator[Job]:
        """The tenant's jobs, newest first, page after page."""
        after = None
        while True:
            listed = self._send(_listing(status, session_id, page, after))
            yield from (Job.model_validate(item) for item in listed["data"])
            after = listed.get("next_after")
            if not listed.get("has_more") or after is None:
                return

    def batch(
        self,
        jobs: list[Mapping[str, Any]],
        *,
        webhook_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> BatchView:
        """``POST /v1/jobs/batch``: up to 1,000 jobs (each a ``submit`` body: ``query`` and
        its fields) stored as one batch, or none if one is invalid. ``webhook_url`` receives
        ``batch.completed`` once all have ended. Returns the batch with its counts."""
        return BatchView.model_validate(
            self._send(_job_batch(jobs, webhook_url, metadata, idempotency_key))
        )

    def get_batch(self, batch_id: uuid.UUID | str) -> BatchView:
        return BatchView.model_validate(self._send(_Call("GET", f"/v1/batches/{batch_id}")))

    def wait_batch(self, batch_id: uuid.UUID | str, *, timeout_s: float = 3600.0) -> BatchView:
        """The batch once every job of it has ended (``completed`` or ``cancelled``)."""
        give_up_at = time.monotonic() + timeout_s
        while not (batch := self.get_batch(batch_id)).status.is_terminal:
            if time.monotonic() >= give_up_at:
                raise TimeoutError(
                    f"batch {batch_id} is still {batch.status} after {timeout_s:g} s"
                )
            time.sleep(BATCH_POLL_S)
        return batch

    def batch_results(self, batch_id: uuid.UUID | str) -> list[BatchResultLine]:
        """Every job of the batch in submission order, as it is now."""
        lines = self._send(_Call("GET", f"/v1/batches/{batch_id}/results"))
        return [BatchResultLine.model_validate(line) for line in lines]


class AsyncChatqClient(_Client):
    """``ChatqClient`` for asyncio: the same calls, awaited."""

    def __init__(self, base_url: str, api_key: str, **options: Any) -> None:
        super().__init__(base_url, api_key, **options)
        self._http = httpx.AsyncClient(**self._options)

    async def __aenter__(self) -> AsyncChatqClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call) -> Any:
        for attempt in itertools.count():
            try:
                response, failure = await self._http.request(*call.args(), **call.kwargs()), None
            except httpx.TransportError as error:
                response, failure = None, error
            delay = _retry_delay(response, attempt, self.max_retries, self.backoff_s)
            if delay is None:
                break
            await asyncio.sleep(delay)
        return _result(response, failure)

    async def submit(self, query: str, *, idempotency_key: str | None = None, **fields: Any) -> Job:
        return Job.model_validate(
            await self._send(_submission(query, idempotency_key, "/v1/jobs", fields))
        )

    async def chat(self, query: str, *, idempotency_key: str | None = None, **fields: Any) -> Job:
        return Job.model_validate(
            await self._send(_submission(query, idempotency_key, "/v1/chat", fields))
        )

    async def get(self, job_id: uuid.UUID | str, *, wait_s: float | None = None) -> Job:
        params = {"wait": wait_s} if wait_s else None
        return Job.model_validate(
            await self._send(_Call("GET", f"/v1/jobs/{job_id}", params=params))
        )

    async def wait(self, job_id: uuid.UUID | str, *, timeout_s: float = 300.0) -> Job:
        give_up_at = time.monotonic() + timeout_s
        while True:
            left = give_up_at - time.monotonic()
            job = await self.get(job_id, wait_s=max(1.0, min(LONG_POLL_S, left)))
            if job.status in TERMINAL:
                return job
            if left <= 0:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout_s:g} s")

    async def chat_stream(
        self, query: str, *, idempotency_key: str | None = None, **fields: Any
    ) -> AsyncIterator[ChatStreamEvent]:
        """``ChatqClient.chat_stream``, awaited."""
        call = _submission(query, idempotency_key, "/v1/chat", {**fields, "stream": True})
        async with self._http.stream(*call.args(), **call.kwargs()) as response:
            if not response.is_success:
                await response.aread()
                _result(response, None)
            events = _ServerSentEvents()
            async for line in response.aiter_lines():
                parsed = events.feed(line)
                if parsed is not None:
                    yield _stream_event(*parsed, response.status_code)

    async def cancel(self, job_id: uuid.UUID | str) -> Job:
        return Job.model_validate(await self._send(_Call("POST", f"/v1/jobs/{job_id}/cancel")))

    async def feedback(
        self,
        job_id: uuid.UUID | str,
        rating: int,
        *,
        scale: str | None = None,
        comment: str | None = None,
        corrected_answer: str | None = None,
    ) -> dict[str, Any]:
        """``ChatqClient.feedback``, awaited."""
        call = _feedback(job_id, rating, scale, comment, corrected_answer)
        return await self._send(call)

    async def jobs(
        self, *, status: list[str] | None = None, session_id: str | None = None, page: int = 100
    ) -> AsyncIterator[Job]:
        after = None
        while True:
            listed = await self._send(_listing(status, session_id, page, after))
            for item in listed["data"]:
                yield Job.model_validate(item)
            after = listed.get("next_after")
            if not listed.get("has_more") or after is None:
                return

    async def batch(
        self,
        jobs: list[Mapping[str, Any]],
        *,
        webhook_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> BatchView:
        """``ChatqClient.batch``, awaited."""
        return BatchView.model_validate(
            await self._send(_job_batch(jobs, webhook_url, metadata, idempotency_key))
        )

    async def get_batch(self, batch_id: uuid.UUID | str) -> BatchView:
        return BatchView.model_validate(await self._send(_Call("GET", f"/v1/batches/{batch_id}")))

    async def wait_batch(
        self, batch_id: uuid.UUID | str, *, timeout_s: float = 3600.0
    ) -> BatchView:
        give_up_at = time.monotonic() + timeout_s
        while not (batch := await self.get_batch(batch_id)).status.is_terminal:
            if time.monotonic() >= give_up_at:
                raise TimeoutError(
                    f"batch {batch_id} is still {batch.status} after {timeout_s:g} s"
                )
            await asyncio.sleep(BATCH_POLL_S)
        return batch

    async def batch_results(self, batch_id: uuid.UUID | str) -> list[BatchResultLine]:
        lines = await self._send(_Call("GET", f"/v1/batches/{batch_id}/results"))
        return [BatchResultLine.model_validate(line) for line in lines]


def verify_webhook(headers: Mapping[str, str], body: bytes | str, secret: str) -> dict[str, Any]:
    """The event of a webhook delivery whose signature checks out with the key's ``whsec_``
    secret; raises ``standardwebhooks.WebhookVerificationError`` otherwise (a forged or replayed
    delivery, or one older than five minutes)."""
    payload = body.decode() if isinstance(body, bytes) else body
    lowered = {name.lower(): value for name, value in headers.items()}
    return Webhook(secret).verify(payload, lowered)
