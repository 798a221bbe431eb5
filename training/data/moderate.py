"""Training examples through the product's moderation, turn by turn, with the product's rules.

- A customer turn is checked as input, as the router checks a question: "block" drops the
  example (the product never lets such a question reach the model, so the model need not learn
  to answer it), "mask" puts ``***`` where the product would (the model learns from the text it
  will be given), "flag" keeps it.
- An assistant turn is checked as output: "block" or "mask" drops the example, because the
  model would learn to write words the product then removes; "flag" (a classifier score alone,
  a politician's name) keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.moderation import Moderator
from training.data.examples import ChatExample, ChatTurn


@dataclass(frozen=True)
class Screening:
    example: ChatExample | None
    """The example to keep (masked where the product masks), None when it is dropped."""
    categories: tuple[str, ...]
    """The categories that dropped or masked it (sorted, distinct)."""

    @property
    def masked(self) -> bool:
        return self.example is not None and bool(self.categories)


class ExampleModeration:
    def __init__(self, moderator: Moderator) -> None:
        self._moderator = moderator

    def screen(self, example: ChatExample) -> Screening:
        turns: list[ChatTurn] = []
        masked_categories: set[str] = set()
        for turn in example.messages:
            answer = turn.role == "assistant"
            result = self._moderator.check(
                turn.content, stage="output" if answer else "input", lang=example.lang
            )
            if result.action == "block" or (answer and result.action == "mask"):
                return Screening(None, result.categories)
            if result.action == "mask":
                masked_categories.update(result.categories)
                turns.append(ChatTurn(role=turn.role, content=result.text))
            else:
                turns.append(turn)
        if not masked_categories:
            return Screening(example, ())
        return Screening(
            example.model_copy(update={"messages": turns}), tuple(sorted(masked_categories))
        )
