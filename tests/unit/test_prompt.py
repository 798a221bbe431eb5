import pytest

from services.worker.prompt import PromptBuilder, PromptTooLongError
from shared.messaging.schemas import ChatTurn


def words(messages: list[dict[str, str]]) -> int:
    return sum(len(message["content"].split()) for message in messages)


def turns(*contents: str) -> list[ChatTurn]:
    roles = ("user", "assistant")
    return [ChatTurn(role=roles[i % 2], content=text) for i, text in enumerate(contents)]


def test_the_prompt_is_system_then_history_then_the_question() -> None:
    builder = PromptBuilder("be kind", max_prompt_tokens=100, count_tokens=words)
    messages = builder.build(turns("hi there", "hello"), "where is my order")
    assert messages == [
        {"role": "system", "content": "be kind"},
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "where is my order"},
    ]


def test_the_oldest_exchanges_are_dropped_to_fit_the_budget() -> None:
    builder = PromptBuilder("sys", max_prompt_tokens=6, count_tokens=words)
    history = turns("one one", "two two", "three", "four")
    messages = builder.build(history, "five")
    assert [m["content"] for m in messages] == ["sys", "three", "four", "five"]


def test_a_question_longer_than_the_budget_is_refused() -> None:
    builder = PromptBuilder("sys", max_prompt_tokens=3, count_tokens=words)
    with pytest.raises(PromptTooLongError, match="longer than the prompt budget"):
        builder.build([], "a question of many words")


def test_generated_text_loses_control_characters() -> None:
    from services.worker.engine.base import clean_text

    assert clean_text(" hi\x00 there\x13\n\tok ") == "hi there\n\tok"


class CountingWords:
    """A token counter (a word is a token) that records how much text it was given."""

    def __init__(self) -> None:
        self.calls = 0
        self.words_counted = 0

    def __call__(self, messages: list[dict[str, str]]) -> int:
        self.calls += 1
        count = words(messages)
        self.words_counted += count
        return count


def test_a_long_history_is_trimmed_in_work_bounded_by_what_fits() -> None:
    # issue 8, hole 8: every dropped exchange used to re-count the whole remaining history
    # (quadratic: 200 turns of 500 words made ~100 counts of up to 100,000 words each)
    counter = CountingWords()
    builder = PromptBuilder("sys", max_prompt_tokens=1_200, count_tokens=counter)
    history = turns(*(f"turn{i} " + "word " * 499 for i in range(200)))
    messages = builder.build(history, "the question")
    assert [m["content"].split()[0] for m in messages[1:-1]] == ["turn198", "turn199"]
    # counted: the question, an empty system, the turns that fit plus the one that did not,
    # and one check of the kept prompt; never the 198 turns that were dropped unread
    assert counter.calls <= 7
    assert counter.words_counted <= 3 * 1_200 + 500


def test_trimming_keeps_whole_exchanges_like_dropping_one_at_a_time() -> None:
    builder = PromptBuilder("sys", max_prompt_tokens=6, count_tokens=words)
    # an assistant turn first (a transcript cut mid-exchange) goes alone, then pairs
    history = [
        ChatTurn(role="assistant", content="a0"),
        *turns("u1", "a1 a1", "u2", "a2"),
    ]
    messages = builder.build(history, "q")
    assert [m["content"] for m in messages] == ["sys", "u2", "a2", "q"]


def test_a_template_that_joins_messages_unevenly_still_fits_the_budget() -> None:
    # a counter that is not a sum over messages (a template adding a token between turns):
    # the arithmetic guess is checked, and one more exchange goes when it was optimistic
    def joined(messages: list[dict[str, str]]) -> int:
        return words(messages) + 2 * max(len(messages) - 2, 0)

    builder = PromptBuilder("sys", max_prompt_tokens=8, count_tokens=joined)
    messages = builder.build(turns("u1", "a1", "u2", "a2"), "q")
    assert joined(messages) <= 8
    # the sum said all four turns fit (4 + 2 = 6 words); joined, they need 14
    assert [m["content"] for m in messages] == ["sys", "u2", "a2", "q"]
