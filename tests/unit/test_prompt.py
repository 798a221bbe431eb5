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
