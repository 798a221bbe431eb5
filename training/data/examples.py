"""One training example as every step of ``chatq train`` passes it on: a chat that ends with the
assistant's answer, its language, where it came from and, for evaluation, the facts its answer
must state.

On disk an example is one JSON line in the chat shape TRL's SFTTrainer reads (``messages``), with
chatq's own keys beside it::

    {"messages": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}],
     "lang": "zh", "origin": "seed", "facts": ["7天"]}
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "user", "assistant"]


class ChatTurn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    content: str


class ChatExample(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: list[ChatTurn] = Field(min_length=2)
    lang: Literal["en", "zh"]
    # "seed" for a row of the data given; "augment:<method>" for a row made from one
    origin: str = "seed"
    # facts (plain text, matched case-insensitively) a correct answer states: the exact-fact
    # accuracy of ``chatq train evaluate``
    facts: list[str] = Field(default_factory=list)
    # "train" or "eval" once ``chatq train split`` has placed it (augmentation refuses "eval");
    # written only when set, so files of unsplit rows keep their shape
    split: Literal["train", "eval"] | None = Field(
        default=None, exclude_if=lambda split: split is None
    )

    @field_validator("messages")
    @classmethod
    def _ends_with_the_answer(cls, messages: list[ChatTurn]) -> list[ChatTurn]:
        if messages[-1].role != "assistant":
            raise ValueError("the last message must be the assistant's answer")
        if not any(message.role == "user" for message in messages[:-1]):
            raise ValueError("an example needs a user message before the answer")
        return messages

    @property
    def prompt(self) -> list[dict[str, str]]:
        """The conversation up to the answer, as chat-template messages."""
        return [message.model_dump() for message in self.messages[:-1]]

    @property
    def answer(self) -> str:
        return self.messages[-1].content

    @property
    def augmented(self) -> bool:
        return self.origin.startswith("augment:")


def read_examples(path: Path) -> list[ChatExample]:
    """Examples of a JSON-lines file written by ``write_examples`` (errors name the line)."""
    examples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                examples.append(ChatExample.model_validate(json.loads(line)))
            except ValueError as error:
                raise ValueError(f"{path}:{number}: not a training example: {error}") from None
    return examples


def write_examples(path: Path, examples: Iterable[ChatExample]) -> int:
    """Write ``examples`` as JSON lines (whole or not at all); returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(path.name + ".partial")
    count = 0
    with draft.open("w", encoding="utf-8") as out:
        for example in examples:
            out.write(example.model_dump_json(exclude_defaults=False) + "\n")
            count += 1
    draft.replace(path)
    return count
