"""Prompts: system prompt, the conversation so far, and the new question, within a token budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.messaging.schemas import ChatTurn

Message = dict[str, str]

# Turns are measured after an empty system message: templates that add a default system prompt
# when none comes first (SmolLM2's) then add nothing, and the real system prompt, which can hold
# pages of retrieved knowledge, is not tokenised again for every turn.
_EMPTY_SYSTEM: Message = {"role": "system", "content": ""}


class PromptTooLongError(ValueError):
    pass


@dataclass(frozen=True)
class PromptBuilder:
    system_prompt: str
    max_prompt_tokens: int
    count_tokens: Callable[[list[Message]], int]

    def build(
        self, history: Sequence[ChatTurn], query: str, *, system_prompt: str | None = None
    ) -> list[Message]:
        """Chat-template messages for ``query`` after ``history`` (oldest first).

        When the whole conversation does not fit the budget, the oldest exchanges are dropped
        first: the latest turns matter most to the answer.

        The work is linear, and bounded by what fits: each turn is counted once, alone, from
        the newest back until the budget is spent (older turns are never tokenised); which
        exchanges stay is then arithmetic, checked by one count of the prompt that is kept.
        """
        system = {"role": "system", "content": system_prompt or self.system_prompt}
        question = {"role": "user", "content": query}
        turns = [{"role": turn.role, "content": turn.content} for turn in history]
        with_question = self.count_tokens([system, question])
        if with_question > self.max_prompt_tokens:
            raise PromptTooLongError(
                f"the question alone is longer than the prompt budget of "
                f"{self.max_prompt_tokens} tokens"
            )
        if not turns:
            return [system, question]  # counted above: it fits
        available = self.max_prompt_tokens - with_question
        empty = self.count_tokens([_EMPTY_SYSTEM])
        starts = exchange_starts(history)
        fits = len(turns)
        counted_from, cost = len(turns), 0
        for start in reversed(starts):
            while counted_from > start and cost <= available:
                counted_from -= 1
                cost += self.count_tokens([_EMPTY_SYSTEM, turns[counted_from]]) - empty
            if cost > available:
                break
            fits = start
        # The sum is exact for templates that frame each message alike (ChatML); should a
        # template join messages otherwise, the next exchange goes too, until the count agrees.
        for start in (s for s in starts if s >= fits):
            messages = [system, *turns[start:], question]
            if start == len(turns) or self.count_tokens(messages) <= self.max_prompt_tokens:
                return messages
        raise AssertionError("unreachable: the question alone fits")


def exchange_starts(history: Sequence[ChatTurn]) -> list[int]:
    """Where the kept part of ``history`` may begin, oldest first, ending with ``len(history)``
    (nothing kept): a whole exchange (question and answer) goes at a time, so that the roles
    keep alternating."""
    starts, index = [], 0
    while index < len(history):
        starts.append(index)
        pair = index + 1 < len(history) and history[index].role == "user"
        index += 2 if pair else 1
    starts.append(len(history))
    return starts
