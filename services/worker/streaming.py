"""Publishing the text of streamed jobs while the engine generates it
(``shared/messaging/streams.py`` describes the transport).

The engine thread calls ``StreamRelay.after_engine_call`` after every admission and decode step:
for each streamed job still decoding it publishes the text that has become stable since the last
step, and for each finished one the rest of its final text and an ``end`` event.

"Stable" means: never taken back. A token can end inside a multi-byte character (shown as U+FFFD
until the next token completes it), the end of the text may be the start of a stop sequence
(cut from the answer once it is complete), and trailing whitespace is trimmed from the final
answer; all three are held back until the next step settles them. Output moderation runs on the
text before it leaves: once the stream so far is flagged, the job's stream publishes nothing more
(its final, moderated answer comes from post-processing, as for any job).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kombu import Connection, Producer

from services.worker.engine import Engine, GenerationResult
from services.worker.engine.base import CONTROL_CHARACTERS
from shared.config import Settings
from shared.logs import get_logger
from shared.messaging.streams import StreamEvent, stream_connection, stream_queue_name

log = get_logger(__name__)

REPLACEMENT_CHARACTER = "\ufffd"
# Text is moderated, then published, in pieces of at least this many characters (or up to the
# end of a sentence, or the end of the answer): moderating the whole text so far at every
# decode step would cost the engine thread time that grows with the answer.
PUBLISH_CHARS = 24
SENTENCE_ENDS = (".", "!", "?", "。", "！", "？", "\n", "；", ";", "，", ",")


class IncrementalText:
    """The stable prefix of a growing answer, and what of it is not published yet."""

    def __init__(self, tokenizer: Any, stop: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.sent = ""

    def advance(self, tokens: Sequence[int]) -> str:
        """The new stable text after ``tokens`` (all of the answer's tokens so far)."""
        text = self.tokenizer.decode(list(tokens), skip_special_tokens=True)
        # as the stored answer will be (``clean_text``): control characters out, trimmed at the
        # start (the end is held back below, as it may still grow)
        text = text.translate(CONTROL_CHARACTERS).lstrip().rstrip(REPLACEMENT_CHARACTER)
        stable = text[: len(text) - self.hold] if self.hold else text
        return self._take(stable.rstrip())

    def finish(self, final_text: str) -> str:
        """The rest of the final answer (empty if it does not continue what was sent)."""
        return self._take(final_text)

    def _take(self, stable: str) -> str:
        if len(stable) <= len(self.sent) or not stable.startswith(self.sent):
            return ""
        delta, self.sent = stable[len(self.sent) :], stable
        return delta


@dataclass
class _Stream:
    job_id: uuid.UUID
    text: IncrementalText
    flagged: Callable[[str], bool]
    index: int = 0
    silenced: bool = False
    pending: str = ""  # taken from the answer, not yet moderated and published


class StreamPublisher:
    """Transient, unconfirmed messages on the engine thread's own broker connection; a broker
    that fails here costs the preview, never the job (logged, reconnected at the next one)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._connection: Connection | None = None
        self._producer: Producer | None = None

    def publish(self, job_id: uuid.UUID, event: StreamEvent) -> None:
        try:
            if self._producer is None:
                self._connection = stream_connection(self.settings)
                self._producer = Producer(self._connection.default_channel)
            self._producer.publish(
                event.model_dump(mode="json"),
                exchange="",
                routing_key=stream_queue_name(job_id),
                serializer="json",
                delivery_mode=1,  # transient
                retry=False,
            )
        except Exception as error:
            log.warning("stream_publish_failed", job_id=str(job_id), error=repr(error))
            self.close()

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception as error:  # already broken: nothing to release
                log.debug("stream_connection_close_failed", error=repr(error))
        self._connection, self._producer = None, None


class StreamRelay:
    def __init__(self, publisher: StreamPublisher) -> None:
        self.publisher = publisher
        self._streams: dict[str, _Stream] = {}

    def start(
        self,
        request_id: str,
        job_id: uuid.UUID,
        tokenizer: Any,
        stop: Sequence[str],
        flagged: Callable[[str], bool],
    ) -> None:
        self._streams[request_id] = _Stream(job_id, IncrementalText(tokenizer, stop), flagged)

    def after_engine_call(self, engine: Engine, finished: Sequence[GenerationResult]) -> None:
        if not self._streams:
            return
        for result in finished:
            stream = self._streams.pop(result.request_id, None)
            if stream is not None:
                if result.error is None:
                    self._send(stream, stream.text.finish(result.text), flush=True)
                self._emit(stream, StreamEvent(type="end", index=stream.index))
        for request_id, stream in self._streams.items():
            tokens = engine.generated_tokens(request_id)
            if tokens is not None:
                self._send(stream, stream.text.advance(tokens))

    def forget(self, request_id: str) -> None:
        self._streams.pop(request_id, None)

    def clear(self) -> None:
        self._streams.clear()

    def _send(self, stream: _Stream, delta: str, *, flush: bool = False) -> None:
        if stream.silenced:
            return
        stream.pending += delta
        pending = stream.pending
        if not pending or (
            not flush and len(pending) < PUBLISH_CHARS and not pending.endswith(SENTENCE_ENDS)
        ):
            return
        if stream.flagged(stream.text.sent):
            stream.silenced = True  # the rest comes moderated, from the stored answer
            log.info("stream_silenced_by_moderation", job_id=str(stream.job_id))
            return
        stream.pending = ""
        self._emit(stream, StreamEvent(type="delta", index=stream.index, text=pending))

    def _emit(self, stream: _Stream, event: StreamEvent) -> None:
        self.publisher.publish(stream.job_id, event)
        stream.index += 1
