"""Training examples as token ids, the loss on the answer only.

The prompt is the worker's prompt, token for token: the system prompt it serves with (unless the
example brings its own), the conversation, the generation prompt, all encoded by the worker's
own ``ChatPromptEncoder`` (customer text with special tokens split into ordinary text). After it
come the answer's tokens, encoded as the encoder encodes message contents, and the end-of-turn
token the chat template closes an assistant message with: the model learns to stop where the
worker stops it. Only those last tokens carry a label.

An example longer than ``max_length`` loses prompt tokens from the left (the oldest context);
one whose answer alone does not fit is left out.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from services.worker.engine.chat_prompt import ChatPromptEncoder, ChatTemplateError
from shared.config import DEFAULT_SYSTEM_PROMPT
from training.data.examples import ChatExample

IGNORE_INDEX = -100  # the label PyTorch's cross-entropy skips

# Private-use characters, as ChatPromptEncoder's placeholders: no template touches them.
_ANSWER_PLACEHOLDER = "\ue000chatq-answer\ue001"


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on the prompt; the token itself on the answer
    truncated: bool  # prompt tokens were cut from the left to fit max_length

    @property
    def answer_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


@dataclass(frozen=True)
class TokenizedSet:
    examples: list[TokenizedExample]
    truncated: int  # kept with their oldest prompt tokens cut
    skipped: int  # left out: the answer alone is longer than max_length


def end_of_turn_ids(tokenizer: Any, stop_token_ids: Collection[int] = ()) -> list[int]:
    """The tokens the chat template puts after an assistant's answer, up to and including the
    first one that stops generation (ChatML: ``<|im_end|>``, not the newline after it). A
    template that closes the answer with no stop token gets the tokenizer's end token."""
    stops = (set(stop_token_ids) | {tokenizer.eos_token_id}) - {None}
    rendered = tokenizer.apply_chat_template(
        [
            {"role": "user", "content": "?"},
            {"role": "assistant", "content": _ANSWER_PLACEHOLDER},
        ],
        tokenize=False,
    )
    if rendered.count(_ANSWER_PLACEHOLDER) != 1:
        raise ChatTemplateError("the chat template must insert the assistant's answer once")
    after = rendered.split(_ANSWER_PLACEHOLDER, 1)[1]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    for position, token in enumerate(ids):
        if token in stops:
            return ids[: position + 1]
    if tokenizer.eos_token_id is None:
        raise ChatTemplateError("the tokenizer has no end token and the template closes no turn")
    return [tokenizer.eos_token_id]


class ExampleTokenizer:
    def __init__(
        self,
        tokenizer: Any,
        *,
        max_length: int,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        stop_token_ids: Collection[int] = (),
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.system_prompt = system_prompt
        self.prompts = ChatPromptEncoder(tokenizer)
        self.end_of_turn = end_of_turn_ids(tokenizer, stop_token_ids)

    def prompt_messages(self, example: ChatExample) -> list[dict[str, str]]:
        """The messages the worker would send the model before this answer."""
        messages = example.prompt
        if messages[0]["role"] != "system":
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        return messages

    def answer_ids(self, answer: str) -> list[int]:
        ids = self.tokenizer(answer, add_special_tokens=False, split_special_tokens=True)
        return [*ids["input_ids"], *self.end_of_turn]

    def encode(self, example: ChatExample) -> TokenizedExample | None:
        """Input ids and labels, or None when the answer alone is longer than max_length."""
        prompt = self.prompts.encode(self.prompt_messages(example))
        answer = self.answer_ids(example.answer)
        room = self.max_length - len(answer)
        if room < 1:
            return None
        truncated = len(prompt) > room
        if truncated:
            prompt = prompt[len(prompt) - room :]
        return TokenizedExample(
            input_ids=prompt + answer,
            labels=[IGNORE_INDEX] * len(prompt) + answer,
            truncated=truncated,
        )

    def encode_all(self, examples: Sequence[ChatExample]) -> TokenizedSet:
        encoded = [self.encode(example) for example in examples]
        kept = [example for example in encoded if example is not None]
        return TokenizedSet(
            examples=kept,
            truncated=sum(example.truncated for example in kept),
            skipped=len(encoded) - len(kept),
        )
