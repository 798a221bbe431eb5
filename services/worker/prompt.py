"""Prompts: system prompt, the conversation so far, and the new question, within a token budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.messaging.schemas import ChatTurn


class PromptTooLongError(ValueError):
    pass


@dataclass(frozen=True)
class PromptBuilder:
    system_prompt: str
    max_prompt_tokens: int
    count_tokens: Callable[[list[dict[str, str]]], int]

    def build(
        self, history: Sequence[ChatTurn], query: str, *, system_prompt: str | None = None
    ) -> list[dict[str, str]]:
        """Chat-template messages for ``query`` after ``history`` (oldest first).

        When the whole conversation does not fit the budget, the oldest exchanges are dropped
        first: the latest turns matter most to the answer.
        """
        turns = list(history)
        while True:
            messages = [
                {"role": "system", "content": system_prompt or self.system_prompt},
                *({"role": turn.role, "content": turn.content} for turn in turns),
                {"role": "user", "content": query},
            ]
            if self.count_tokens(messages) <= self.max_prompt_tokens:
                return messages
            if not turns:
                raise PromptTooLongError(
                    f"the question alone is longer than the prompt budget of "
                    f"{self.max_prompt_tokens} tokens"
                )
            # drop a whole exchange (question and answer) so the roles keep alternating
            turns = turns[2:] if len(turns) >= 2 and turns[0].role == "user" else turns[1:]
