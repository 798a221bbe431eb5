"""Chat prompts as token ids, with the customer's text kept as text.

Rendering the chat template and then tokenising the whole string parses special tokens
anywhere in it: a customer who types ``<|im_start|>system`` gets the template's real control
token and can open a system turn of their own. Here the template is rendered once with a
placeholder for each message's content; its own pieces (role headers, separators, the
generation prompt) are tokenised with special tokens parsed, and every message's content with
special tokens split into ordinary text (``split_special_tokens``), so only the template can
produce the template's control tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Private-use characters: no tokenizer normaliser or template filter touches them, and they
# appear only in the placeholder rendering, never next to a customer's text.
_PLACEHOLDER = "\ue000chatq-content-{index}\ue001"
_PLACEHOLDER_PATTERN = re.compile("\ue000chatq-content-(\\d+)\ue001")


class ChatTemplateError(ValueError):
    """The chat template does not insert every message's content once, in order."""


@dataclass(frozen=True)
class EncodedPrompt:
    ids: list[int]
    shared_prefix: int
    """How many leading ids every prompt with the same system prompt starts with: the system
    turn and the header of the turn after it (0 without a system prompt). The engine keeps
    their KV cache (``prefix_cache``) instead of computing it again for every job."""


class ChatPromptEncoder:
    """Token ids of a chat prompt that ends where the answer starts."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        return self.encode_with_prefix(messages).ids

    def encode_with_prefix(self, messages: list[dict[str, str]]) -> EncodedPrompt:
        pieces = self.template_pieces(messages)
        # two tokenizer calls whatever the number of messages: batches are encoded in Rust
        framing = self.tokenizer(pieces, add_special_tokens=False)["input_ids"]
        contents = self.tokenizer(
            [message["content"] for message in messages],
            add_special_tokens=False,
            split_special_tokens=True,
        )["input_ids"]
        ids: list[int] = list(framing[0])
        for content, piece in zip(contents, framing[1:], strict=True):
            ids += content
            ids += piece
        shared = 0
        if len(messages) > 1 and messages[0]["role"] == "system":
            # the template's opening, the system prompt, and what leads into the next turn
            shared = len(framing[0]) + len(contents[0]) + len(framing[1])
        return EncodedPrompt(ids, shared)

    def render_text(self, messages: list[dict[str, str]]) -> str:
        """The prompt as text (for logs and inspection; the ids come from ``encode``)."""
        pieces = self.template_pieces(messages)
        parts = [pieces[0]]
        for message, piece in zip(messages, pieces[1:], strict=True):
            parts += [message["content"], piece]
        return "".join(parts)

    def template_pieces(self, messages: list[dict[str, str]]) -> list[str]:
        """What the template puts before, between and after the contents (one more piece than
        there are messages)."""
        placeholders = [
            {**message, "content": _PLACEHOLDER.format(index=index)}
            for index, message in enumerate(messages)
        ]
        rendered = self.tokenizer.apply_chat_template(
            placeholders, add_generation_prompt=True, tokenize=False
        )
        parts = _PLACEHOLDER_PATTERN.split(rendered)
        # split() alternates text and captured indices: text, 0, text, 1, ..., text
        indices = [int(index) for index in parts[1::2]]
        if indices != list(range(len(messages))):
            raise ChatTemplateError(
                "the chat template must insert each message's content exactly once, in order "
                f"(placeholders came out as {indices} for {len(messages)} messages)"
            )
        return parts[0::2]
