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
- **Waiting.** ``wait`` long-polls ``GET /v1/jobs/{id}?wait=…`` until the job is finished.
- **Errors.** Any other refusal raises ``ChatqError`` with the problem details the API sent.
- **Webhooks.** ``verify_webhook(headers, body, secret)`` checks a delivery's Standard Webhooks
  signature and returns the event.
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

from shared.db.models import JobStatus
from shared.job_view import JobView as Job

__all__ = ["AsyncChatqClient", "ChatqClient", "ChatqError", "Job", "verify_webhook"]

RETRIED_STATUSES = frozenset({429, 503})
TERMINAL = frozenset(status for status in JobStatus if status.is_terminal)
LONG_POLL_S = 30.0


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
        return response.json() if response.content else None
    try:
        problem = response.json()
    except json.JSONDecodeError:
        problem = {"title": response.reason_phrase, "detail": response.text[:500]}
    raise ChatqError(response.status_code, problem)


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

    async def cancel(self, job_id: uuid.UUID | str) -> Job:
        return Job.model_validate(await self._send(_Call("POST", f"/v1/jobs/{job_id}/cancel")))

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


def verify_webhook(headers: Mapping[str, str], body: bytes | str, secret: str) -> dict[str, Any]:
    """The event of a webhook delivery whose signature checks out with the key's ``whsec_``
    secret; raises ``standardwebhooks.WebhookVerificationError`` otherwise (a forged or replayed
    delivery, or one older than five minutes)."""
    payload = body.decode() if isinstance(body, bytes) else body
    lowered = {name.lower(): value for name, value in headers.items()}
    return Webhook(secret).verify(payload, lowered)  # type: ignore[no-any-return]
