"""Streaming text: what the worker publishes between decode steps is never taken back (split
characters, stop sequences and trailing spaces wait), moderation silences a stream, and the API
forwards a retried job's stream without repeating itself."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from services.api.chat.streaming import StreamText
from services.worker.engine import GenerationResult
from services.worker.streaming import IncrementalText, StreamRelay
from shared.messaging.streams import StreamEvent

# token → text; 7 and 8 are the two halves of "中" (a byte-level BPE splits a character)
PIECES = {1: "Hello", 2: " there", 3: ",", 4: " ", 5: "friend", 6: "\nUser:", 9: " you"}


class FakeTokenizer:
    def decode(self, tokens: Sequence[int], skip_special_tokens: bool = True) -> str:
        text, index = "", 0
        while index < len(tokens):
            if tokens[index] == 7:
                complete = index + 1 < len(tokens) and tokens[index + 1] == 8
                text += "中" if complete else "\ufffd"
                index += 2 if complete else 1
            else:
                text += PIECES[tokens[index]]
                index += 1
        return text


def stream_of(tokens: list[int], stop: Sequence[str] = ()) -> tuple[list[str], IncrementalText]:
    text = IncrementalText(FakeTokenizer(), stop)
    deltas = [text.advance(tokens[: n + 1]) for n in range(len(tokens))]
    return deltas, text


def test_the_deltas_add_up_to_the_answer_and_nothing_unsettled_leaves_early() -> None:
    deltas, text = stream_of([1, 2, 4, 7, 8, 3, 4])
    # the space waits for what follows it; half of 中 waits for its other half
    assert deltas == ["Hello", " there", "", "", " 中", ",", ""]
    assert text.finish("Hello there 中,") == ""  # the final answer is trimmed: all was sent
    assert "".join(deltas) == "Hello there 中,"


def test_half_a_character_waits_for_its_other_half() -> None:
    deltas, _ = stream_of([1, 7, 8])
    assert deltas == ["Hello", "", "中"]
    assert all("\ufffd" not in delta for delta in deltas)


def test_text_that_may_start_a_stop_sequence_waits_until_it_cannot() -> None:
    stop = ["\nUser:"]
    deltas, text = stream_of([1, 2, 6], stop)
    # the answer is cut before the stop sequence: nothing of it was published
    rest = text.finish("Hello there")
    assert "".join(deltas) + rest == "Hello there"
    assert all("User" not in delta for delta in deltas)


def test_a_final_text_that_does_not_continue_the_stream_adds_nothing() -> None:
    _, text = stream_of([1, 2])
    assert text.finish("Something else") == ""


class Published:
    def __init__(self) -> None:
        self.events: list[tuple[uuid.UUID, StreamEvent]] = []

    def publish(self, job_id: uuid.UUID, event: StreamEvent) -> None:
        self.events.append((job_id, event))


class Decoding:
    def __init__(self) -> None:
        self.tokens: dict[str, list[int]] = {}

    def generated_tokens(self, request_id: str) -> list[int] | None:
        return self.tokens.get(request_id)


def finished(request_id: str, text: str) -> GenerationResult:
    return GenerationResult(request_id, text, 5, 3, "stop", 1, 1.0)


def test_the_relay_publishes_moderated_pieces_then_the_end_and_moderation_silences_it() -> None:
    published, engine = Published(), Decoding()
    relay = StreamRelay(published)  # type: ignore[arg-type]
    calm, rude = uuid.uuid4(), uuid.uuid4()
    checked: list[str] = []

    def calm_check(text: str) -> bool:
        checked.append(text)
        return False

    relay.start("a", calm, FakeTokenizer(), (), flagged=calm_check)
    relay.start("b", rude, FakeTokenizer(), (), flagged=lambda text: "friend" in text)
    steps = {"a": [1, 2, 3, 4, 1, 2, 4, 1, 2], "b": [1, 4, 5, 3]}
    for step in range(1, 10):
        engine.tokens = {key: tokens[:step] for key, tokens in steps.items()}
        relay.after_engine_call(engine, [])  # type: ignore[arg-type]
    done = [finished("a", "Hello there, Hello there Hello there"), finished("b", "Hello friend,")]
    relay.after_engine_call(engine, done)  # type: ignore[arg-type]
    by_job: dict[uuid.UUID, list[StreamEvent]] = {}
    for job_id, event in published.events:
        by_job.setdefault(job_id, []).append(event)
    # text leaves in pieces ending a clause or long enough, each moderated first
    assert [(e.type, e.text) for e in by_job[calm]] == [
        ("delta", "Hello there,"), ("delta", " Hello there Hello there"), ("end", ""),
    ]  # fmt: skip
    assert [e.index for e in by_job[calm]] == [0, 1, 2]
    assert checked == ["Hello there,", "Hello there, Hello there Hello there"]
    # "friend" never left the worker: the moderated answer comes from post-processing
    assert [(e.type, e.text) for e in by_job[rude]] == [("end", "")]


def event(index: int, text: str) -> StreamEvent:
    return StreamEvent(type="delta", index=index, text=text)


def test_the_api_forwards_a_retried_stream_without_repeating_it() -> None:
    text = StreamText()
    assert text.add(event(0, "Hello")) == "Hello"
    assert text.add(event(1, " the")) == " the"
    # the engine failed; another worker starts the job again from its first token
    assert text.add(event(0, "Hel")) == ""
    assert text.add(event(1, "lo the")) == ""
    assert text.add(event(2, "re")) == "re"
    assert text.finish("Hello there, friend") == ", friend"
    assert text.forwarded == "Hello there, friend"


def test_after_a_lost_delta_the_api_forwards_only_what_continues_the_stored_answer() -> None:
    text = StreamText()
    assert text.add(event(0, "Hello")) == "Hello"
    assert text.add(event(2, " friend")) == ""  # index 1 was lost on the way
    assert text.add(event(3, ", hi")) == ""
    assert text.finish("Hello there friend, hi") == " there friend, hi"


def test_a_stored_answer_unlike_the_stream_is_not_forwarded_as_a_delta() -> None:
    text = StreamText()
    text.add(event(0, "You idiot"))
    assert text.finish("I'm sorry, I can't help with that.") == ""
