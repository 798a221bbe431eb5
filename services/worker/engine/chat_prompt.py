"""Chat prompts as token ids, with the customer's text kept as text.

Rendering the chat template and then tokenising the whole string parses special tokens
anywhere in it: a customer who types ``<|im_start|>system`` gets the template's real control
token and can open a system turn of their own. Here the template is rendered once with a
placeholder for each message's content; its own pieces (role headers, separators, the
generation prompt) are tokenised with special tokens parsed, and every message's content with
special tokens split into ordinary text (``split_special_tokens``), so only the template can
produce the template's control tokens.

A long-lived encoder (``remembering=True``: the preparer's, one per worker) keeps what repeats
from job to job: the template's pieces for each sequence of roles, and the ids of recent texts
(the system prompt, the template's pieces), and it calls the Rust tokenizer without
transformers' per-call set-up (two copies of it, one splitting special tokens, one not). A
prompt after the default system prompt took 1.25 ms p50 to build on the preparer thread in the
running pipeline; the question is then the only text tokenised.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Private-use characters: no tokenizer normaliser or template filter touches them, and they
# appear only in the placeholder rendering, never next to a customer's text.
_PLACEHOLDER = "\ue000chatq-content-{index}\ue001"
_PLACEHOLDER_PATTERN = re.compile("\ue000chatq-content-(\\d+)\ue001")
# Texts whose ids a remembering encoder keeps (system prompts, template pieces, recent turns).
REMEMBERED_TEXTS = 256
# Sequences of roles whose template pieces it keeps.
REMEMBERED_TEMPLATES = 64


class ChatTemplateError(ValueError):
    """The chat template does not insert every message's content once, in order."""


@dataclass(frozen=True)
class EncodedPrompt:
    ids: list[int]
    shared_prefix: int
    """How many leading ids every prompt with the same system prompt starts with: the system
    turn and the header of the turn after it (0 without a system prompt). The engine keeps
    their KV cache (``prefix_cache``) instead of computing it again for every job."""


class _RememberedIds:
    """Ids of texts as one Rust tokenizer gives them, the most recent ``size`` remembered."""

    def __init__(self, encode_batch: Callable[[list[str]], list[Any]], size: int) -> None:
        self._encode_batch = encode_batch
        self._size = size
        self._ids: OrderedDict[str, list[int]] = OrderedDict()

    def __call__(self, texts: list[str]) -> list[list[int]]:
        missing = list(dict.fromkeys(text for text in texts if text not in self._ids))
        if missing:
            for text, encoding in zip(missing, self._encode_batch(missing), strict=True):
                self._ids[text] = encoding.ids
        for text in texts:
            self._ids.move_to_end(text)
        ids = [self._ids[text] for text in texts]
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return ids


class ChatPromptEncoder:
    """Token ids of a chat prompt that ends where the answer starts."""

    def __init__(self, tokenizer: Any, *, remembering: bool = False) -> None:
        """``remembering``: keep template pieces and recent texts' ids (see the module's
        docstring); for an encoder that lives long, since making it copies the tokenizer."""
        self.tokenizer = tokenizer
        self._framing_ids: Callable[[list[str]], list[list[int]]] = self._framing_by_call
        self._content_ids: Callable[[list[str]], list[list[int]]] = self._content_by_call
        self._pieces: OrderedDict[tuple[Any, ...], list[str]] | None = None
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if remembering and backend is not None:
            self._framing_ids = _RememberedIds(_encoder_of(backend, False), REMEMBERED_TEXTS)
            self._content_ids = _RememberedIds(_encoder_of(backend, True), REMEMBERED_TEXTS)
            # a template that reads the clock renders differently from day to day
            if "strftime" not in str(getattr(tokenizer, "chat_template", "") or ""):
                self._pieces = OrderedDict()

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        return self.encode_with_prefix(messages).ids

    def encode_with_prefix(self, messages: list[dict[str, str]]) -> EncodedPrompt:
        pieces = self.template_pieces(messages)
        # two tokenizer calls whatever the number of messages: batches are encoded in Rust
        framing = self._framing_ids(pieces)
        contents = self._content_ids([message["content"] for message in messages])
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

    def _framing_by_call(self, texts: list[str]) -> list[list[int]]:
        ids: list[list[int]] = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return ids

    def _content_by_call(self, texts: list[str]) -> list[list[int]]:
        ids: list[list[int]] = self.tokenizer(
            texts, add_special_tokens=False, split_special_tokens=True
        )["input_ids"]
        return ids

    def template_pieces(self, messages: list[dict[str, str]]) -> list[str]:
        """What the template puts before, between and after the contents (one more piece than
        there are messages)."""
        if self._pieces is None:
            return self._render_pieces(messages)
        # the contents are placeholders: the pieces depend on everything else in the messages
        shape = tuple(
            tuple(sorted((k, v) for k, v in message.items() if k != "content"))
            for message in messages
        )
        pieces = self._pieces.get(shape)
        if pieces is None:
            pieces = self._pieces[shape] = self._render_pieces(messages)
            while len(self._pieces) > REMEMBERED_TEMPLATES:
                self._pieces.popitem(last=False)
        return pieces

    def _render_pieces(self, messages: list[dict[str, str]]) -> list[str]:
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


def _encoder_of(backend: Any, split_special_tokens: bool) -> Callable[[list[str]], list[Any]]:
    """A copy of the Rust tokenizer ``backend`` that encodes as transformers' fast tokenizer
    does when called with ``add_special_tokens=False`` and ``split_special_tokens``: no
    truncation or padding (transformers turns them off per call), special tokens in the text
    parsed or split into ordinary text. The copy is set once: changing the setting of a
    tokenizer another thread encodes with fails ("Already borrowed")."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(backend.to_str())
    copy.no_truncation()
    copy.no_padding()
    copy.encode_special_tokens = split_special_tokens

    def encode_batch(texts: list[str]) -> list[Any]:
        return copy.encode_batch(texts, add_special_tokens=False)

    return encode_batch
