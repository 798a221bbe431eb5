"""Answering a chat as a stream: the job is submitted like any other, its text arrives from the
worker as the model generates it (``shared/messaging/streams.py``), and the stored answer (after
output moderation) closes the stream.

The stream's queue is declared before the job exists, so no token is published before someone
listens. A job answered without the model (FAQ, rules, cache, moderation) sends no tokens: its
stream is just the stored answer. A job retried after an engine failure streams again from its
start; what repeats the text already forwarded is not forwarded twice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType

from kombu import Connection
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.simple import SimpleQueue
from pydantic import ValidationError

from services.api.auth import Caller, current_caller, hold_wait_slot
from services.api.context import ApiContext, api_context
from services.api.jobs.protocol import JobCreate
from services.api.jobs.service import load_job, request_fingerprint, submit_job
from services.api.problems import Problem, ProblemType
from shared.config import Settings
from shared.db.models import Job
from shared.logs import get_logger
from shared.messaging.streams import StreamEvent, stream_connection, stream_queue

log = get_logger(__name__)

# How long one wait for a token lasts before the job's state is looked at again
TOKEN_WAIT_S = 0.05
# A stream that has nothing to say for this long sends a comment, so that proxies and clients
# with a read timeout keep the connection while the job waits in the queue
KEEPALIVE_S = 15.0


@dataclass(frozen=True)
class StreamPiece:
    """One thing to write: more text, or the finished job (``final``), or nothing in time."""

    text: str = ""
    final: Job | None = None
    timed_out: bool = False
    keepalive: bool = False


class TokenListener:
    """The job's stream queue, declared on entry and deleted on exit."""

    def __init__(self, settings: Settings, job_id: uuid.UUID) -> None:
        self.settings = settings
        self.job_id = job_id
        self._connection: Connection | None = None
        self._queue: SimpleQueue | None = None

    def __enter__(self) -> TokenListener:
        self._connection = stream_connection(self.settings)
        queue = stream_queue(self.settings, self.job_id)
        self._queue = self._connection.SimpleQueue(queue, no_ack=True)
        return self

    def get(self, timeout_s: float) -> StreamEvent | None:
        assert self._queue is not None
        try:
            message = self._queue.get(block=True, timeout=timeout_s)
        except SimpleQueue.Empty:
            return None
        try:
            return StreamEvent.model_validate(message.payload)
        except ValidationError:
            log.warning("stream_event_invalid", job_id=str(self.job_id))
            return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if self._queue is not None:
                # the consumer first: RabbitMQ cancels the consumers of a deleted queue
                self._queue.consumer.cancel()
                self._queue.queue.delete()  # RabbitMQ drops it anyway (exclusive, expiring)
                self._queue.close()
        except Exception as failure:  # the broker went away: nothing left to clean
            log.warning("stream_queue_cleanup_failed", job_id=str(self.job_id), error=repr(failure))
        finally:
            if self._connection is not None:
                self._connection.release()


class StreamText:
    """What of the worker's stream to forward: never a character twice, never a correction."""

    def __init__(self) -> None:
        self.forwarded = ""
        self._attempt = ""
        self._last_index = -1
        self._broken = False  # a delta of this attempt went missing: forward no more of it

    def add(self, event: StreamEvent) -> str:
        if event.index <= self._last_index:  # the job was retried: its stream starts again
            self._attempt, self._broken = "", event.index != 0
        elif event.index != self._last_index + 1:
            self._broken = True  # transient messages: one was lost on the way
        self._last_index = event.index
        if event.type != "delta" or self._broken:
            return ""
        self._attempt += event.text
        return self._extend(self._attempt)

    def finish(self, answer: str) -> str:
        """The rest of the stored answer, if it continues what was forwarded."""
        return self._extend(answer)

    def _extend(self, text: str) -> str:
        if len(text) <= len(self.forwarded) or not text.startswith(self.forwarded):
            return ""
        delta, self.forwarded = text[len(self.forwarded) :], text
        return delta


class StreamedJob:
    """A job submitted for streaming, with its wait slot and its token listener held until the
    response's generator is closed."""

    def __init__(self, job_in: JobCreate, endpoint: str, idempotency_key: str | None) -> None:
        self.ctx: ApiContext = api_context()
        self.caller: Caller = current_caller()
        self._resources = ExitStack()
        # the wait slot before the job: a refused stream leaves no job behind
        self._resources.enter_context(hold_wait_slot(self.ctx.settings.chat_timeout_s))
        try:
            job_id = uuid.uuid4()
            try:
                self.listener = self._resources.enter_context(
                    TokenListener(self.ctx.settings, job_id)
                )
            except (KombuOperationalError, OSError) as error:
                log.warning("stream_broker_unavailable", error=repr(error))
                raise Problem(
                    ProblemType.SERVICE_UNAVAILABLE,
                    "The message broker cannot be reached to stream the answer; retry, or "
                    "send the request without `stream`.",
                    headers={"Retry-After": "5"},
                ) from None
            submission = submit_job(
                self.ctx,
                self.caller,
                job_in,
                fingerprint=request_fingerprint(endpoint, job_in),
                idempotency_key=idempotency_key,
                job_id=job_id,
                stream=True,
            )
        except BaseException:
            self._resources.close()
            raise
        self.job = submission.job
        self.text = StreamText()

    def close(self) -> None:
        """Release the wait slot and the token queue (idempotent: the response calls it when
        it is closed, whether or not its body was ever read)."""
        self._resources.close()

    def pieces(self) -> Iterator[StreamPiece]:
        """Text as it comes, then the finished job (or ``timed_out``), with ``keepalive``
        pieces while nothing happens; releases what the stream holds when it ends."""
        try:
            yield from self._pieces()
        finally:
            self.close()

    def _pieces(self) -> Iterator[StreamPiece]:
        settings = self.ctx.settings
        give_up_at = time.monotonic() + settings.chat_timeout_s
        quiet_since = time.monotonic()
        intervals = self.ctx.job_events.poll_intervals()
        with self.ctx.job_events.subscribe(self.job.id) as finished:
            # the job's row is read when it finishes (its event), when the model's stream ends,
            # and otherwise only as often as any waiter re-reads it
            next_check = 0.0
            while True:
                event = self.listener.get(TOKEN_WAIT_S)
                now = time.monotonic()
                if event is not None:
                    quiet_since = now
                    delta = self.text.add(event)
                    if delta:
                        yield StreamPiece(text=delta)
                    if event.type == "end":
                        next_check = now  # the stored answer follows soon
                    continue
                if now - quiet_since >= KEEPALIVE_S:
                    quiet_since = now
                    yield StreamPiece(keepalive=True)
                if finished.is_set() or now >= next_check:
                    finished.clear()
                    next_check = now + next(intervals)
                    job = load_job(self.ctx, self.caller, self.job.id)
                    if job is not None and job.status.is_terminal:
                        rest = self.text.finish(job.response or "")
                        if rest:
                            yield StreamPiece(text=rest)
                        yield StreamPiece(final=job)
                        return
                if now >= give_up_at:
                    yield StreamPiece(timed_out=True)
                    return
