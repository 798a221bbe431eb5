"""The questions of a set as jobs on a running chatq, over its public HTTP API.

Every item gets a fresh session id, so runs and items never share history; an item's earlier
turns are submitted first, in order, each waited for, because a turn's history is the session's
completed turns. Answers arrive by long-polling ``GET /v1/jobs/{id}?wait=30``. 429 and 503 are
retried after their ``Retry-After`` (a bounded number of times); a key the API rejects, or an API
that cannot be reached, stops the whole run rather than failing every question alike.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tqdm import tqdm

from chatq.evaluation.questions import Question, QuestionSet
from chatq.evaluation.scoring import Score, Similarity, score_answer

WARM_UP_QUERY = "Hello"
PENDING_STATUSES = frozenset({"queued", "in_progress"})
LONG_POLL_S = 30.0
MAX_RETRY_AFTER_S = 60.0
RETRIED_STATUSES = frozenset({429, 503})
FATAL_STATUSES = frozenset({401, 403, 404})  # the key or the URL is wrong: every job would fail


class EvalRunError(RuntimeError):
    """The run cannot go on (rejected key, unreachable API); the message says why."""


class JobRequestError(RuntimeError):
    """One request failed for this item only (a query the API refused, a job that vanished)."""


@dataclass
class Result:
    """One item of the set: its scored answer and how it was produced."""

    question: Question
    status: str
    """The scored job's final status, or ``error``/``timeout`` when none was reached."""
    answer: str | None
    route: str | None
    sources: list[dict[str, Any]]
    intent: dict[str, Any] | None
    handoff: bool
    latency_ms: float | None
    """Submission to completion of the scored question, as the client saw it."""
    job_ids: list[str]
    """Earlier turns first, the scored question last."""
    score: Score
    error: str | None = None
    turn_answers: list[str | None] = field(default_factory=list)
    timings: dict[str, Any] | None = None

    @property
    def correct(self) -> bool:
        return self.score.correct


def retry_after_s(response: httpx.Response, attempt: int) -> float:
    """The server's ``Retry-After`` (seconds or an HTTP date), else exponential back-off."""
    header = response.headers.get("Retry-After")
    delay: float | None = None
    if header:
        try:
            delay = float(header)
        except ValueError:
            try:
                delay = (parsedate_to_datetime(header) - datetime.now(UTC)).total_seconds()
            except (TypeError, ValueError):
                delay = None
    if delay is None:
        delay = 0.5 * 2**attempt
    return min(max(delay, 0.0), MAX_RETRY_AFTER_S)


def _problem(response: httpx.Response) -> str:
    """``401 Missing or invalid API key: ...`` from a problem+json body (or the raw text)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and (body.get("title") or body.get("detail")):
        text = ": ".join(str(body[k]) for k in ("title", "detail") if body.get(k))
    else:
        text = response.text[:300] or response.reason_phrase
    return f"{response.status_code} {text}"


def _job_error(job: dict[str, Any]) -> str:
    error = job.get("error") or {}
    if isinstance(error, dict) and (error.get("code") or error.get("message")):
        return f"{job.get('status')}: " + ": ".join(
            str(error[k]) for k in ("code", "message") if error.get(k)
        )
    return f"job {job.get('status')}"


class JobClient:
    """Submits jobs and waits for them, retrying what the API asks to be retried."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        max_retries: int = 6,
        sleep: Callable[[float], None] = time.sleep,
        health_check: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.max_retries = max_retries
        self.sleep = sleep
        self.health_check = health_check
        self.stopping = threading.Event()

    def check(self) -> None:
        """Raise when the run is stopping, or when ``health_check`` does (a dead worker would
        otherwise leave every job waiting until its timeout)."""
        if self.stopping.is_set():
            raise EvalRunError("the run was stopped")
        if self.health_check is not None:
            self.health_check()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            last_try = attempt == self.max_retries
            try:
                response = self.client.request(method, url, **kwargs)
            except httpx.TransportError as error:
                if last_try:
                    raise EvalRunError(f"cannot reach {self.client.base_url}: {error!r}") from error
                self.sleep(min(0.5 * 2**attempt, MAX_RETRY_AFTER_S))
                continue
            if response.status_code in RETRIED_STATUSES and not last_try:
                self.sleep(retry_after_s(response, attempt))
                continue
            if response.status_code in FATAL_STATUSES and method == "POST":
                raise EvalRunError(f"the API refused the job: {_problem(response)}")
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def submit(self, body: dict[str, Any]) -> str:
        response = self._request("POST", "/v1/jobs", json=body)
        if response.status_code != 202:
            raise JobRequestError(f"submit failed: {_problem(response)}")
        return str(response.json()["id"])

    def wait(self, job_id: str, timeout_s: float) -> dict[str, Any] | None:
        """The job once it left queued/in_progress, or ``None`` after ``timeout_s``."""
        give_up_at = time.monotonic() + timeout_s
        while (remaining := give_up_at - time.monotonic()) > 0:
            self.check()
            wait_s = min(LONG_POLL_S, remaining)
            response = self._request(
                "GET", f"/v1/jobs/{job_id}", params={"wait": math.ceil(wait_s)}, timeout=wait_s + 10
            )
            if response.status_code != 200:
                raise JobRequestError(f"job {job_id}: {_problem(response)}")
            job: dict[str, Any] = response.json()
            if job.get("status") not in PENDING_STATUSES:
                return job
        return None


@dataclass(frozen=True)
class RunOptions:
    max_new_tokens: int = 96
    timeout_s: float = 300.0
    similarity: Similarity | None = None


def _failed(
    question: Question,
    status: str,
    error: str,
    job_ids: list[str],
    turn_answers: list[str | None],
    options: RunOptions,
) -> Result:
    return Result(
        question=question,
        status=status,
        answer=None,
        route=None,
        sources=[],
        intent=None,
        handoff=False,
        latency_ms=None,
        job_ids=job_ids,
        score=score_answer(question, None, options.similarity),
        error=error,
        turn_answers=turn_answers,
    )


def run_item(jobs: JobClient, question: Question, options: RunOptions) -> Result:
    """Ask one item: its earlier turns in order, then the scored question, in a new session."""
    session_id = f"eval-{uuid.uuid4().hex}"
    params = {"max_new_tokens": options.max_new_tokens, "temperature": 0.0}
    job_ids: list[str] = []
    turn_answers: list[str | None] = []
    try:
        for number, turn in enumerate(question.turns, start=1):
            job_id = jobs.submit({"query": turn, "session_id": session_id, "params": params})
            job_ids.append(job_id)
            job = jobs.wait(job_id, options.timeout_s)
            if job is None:
                reason = f"turn {number} did not finish within {options.timeout_s:g} s"
                return _failed(question, "timeout", reason, job_ids, turn_answers, options)
            turn_answers.append(job.get("response"))
            if job.get("status") != "completed":
                reason = f"turn {number} {_job_error(job)}"
                return _failed(
                    question, str(job.get("status")), reason, job_ids, turn_answers, options
                )
        started = time.monotonic()
        job_id = jobs.submit(
            {"query": question.question, "session_id": session_id, "params": params}
        )
        job_ids.append(job_id)
        job = jobs.wait(job_id, options.timeout_s)
        latency_ms = round((time.monotonic() - started) * 1000, 1)
    except JobRequestError as error:
        return _failed(question, "error", str(error), job_ids, turn_answers, options)
    if job is None:
        reason = f"no answer within {options.timeout_s:g} s"
        return _failed(question, "timeout", reason, job_ids, turn_answers, options)
    completed = job.get("status") == "completed"
    answer = job.get("response") if completed else None
    return Result(
        question=question,
        status=str(job.get("status")),
        answer=answer,
        route=job.get("route"),
        sources=list(job.get("sources") or []),
        intent=job.get("intent"),
        handoff=bool(job.get("handoff")),
        latency_ms=latency_ms,
        job_ids=job_ids,
        score=score_answer(question, answer, options.similarity),
        error=None if completed else _job_error(job),
        turn_answers=turn_answers,
        timings=job.get("timings"),
    )


def warm_up_tenant(jobs: JobClient, options: RunOptions) -> None:
    """One unscored job, so that the first scored ones do not pay for the tenant's first use
    (its knowledge index is built then) in their latency. Its answer does not matter; a key the
    API refuses still stops the run."""
    body = {
        "query": WARM_UP_QUERY,
        "session_id": f"eval-warm-up-{uuid.uuid4().hex}",
        "params": {"max_new_tokens": options.max_new_tokens, "temperature": 0.0},
    }
    with contextlib.suppress(JobRequestError):
        jobs.wait(jobs.submit(body), options.timeout_s)


def run_questions(
    base_url: str,
    api_key: str,
    question_set: QuestionSet,
    *,
    concurrency: int = 8,
    max_new_tokens: int = 96,
    timeout_s: float = 300,
    similarity: Similarity | None = None,
    progress: bool = False,
    label: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    health_check: Callable[[], None] | None = None,
    warm_up: bool = False,
) -> list[Result]:
    """Every question of the set, ``concurrency`` items at a time; results in the set's order.

    ``timeout_s`` bounds the wait for each job. ``health_check`` is called before every poll
    and may raise to stop the run (``Stack.check_alive``, say). ``warm_up`` asks one unscored
    question first. Raises ``EvalRunError`` when the run cannot go on; the remaining items are
    not started."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    options = RunOptions(max_new_tokens, timeout_s, similarity)
    questions = question_set.questions
    results: list[Result | None] = [None] * len(questions)
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency)

    def ask(question: Question) -> Result:
        jobs.check()
        return run_item(jobs, question, options)

    with (
        httpx.Client(base_url=base_url, headers=headers, timeout=30, limits=limits) as client,
        tqdm(
            total=len(questions), desc=label or question_set.name, unit="q", disable=not progress
        ) as bar,
    ):
        jobs = JobClient(client, sleep=sleep, health_check=health_check)
        if warm_up:
            warm_up_tenant(jobs, options)
        executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eval")
        try:
            futures: dict[Future[Result], int] = {
                executor.submit(ask, question): index for index, question in enumerate(questions)
            }
            for future in as_completed(futures):
                result = future.result()
                results[futures[future]] = result
                bar.update(1)
                bar.set_postfix(correct=sum(r is not None and r.correct for r in results))
        except BaseException:
            jobs.stopping.set()
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        executor.shutdown(wait=True)
    return [result for result in results if result is not None]
