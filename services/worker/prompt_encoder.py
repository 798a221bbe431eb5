"""Prompt token ids made once: on the preparer thread, where the prompt is fitted to its budget,
and handed to the engine with the request, so the engine does not encode it again.

The preparer encodes on its own copy of the engine's tokenizer. A fast tokenizer is not safe to
share between threads: transformers sets an attribute of the Rust tokenizer on every call, which
fails ("Already borrowed") while the engine thread is encoding or decoding with it.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence

from services.worker.engine import Engine
from services.worker.engine.chat_prompt import ChatPromptEncoder, EncodedPrompt

Messages = Sequence[dict[str, str]]
# Fitting a prompt counts a few candidates; the one kept is among the last counted.
REMEMBERED_PROMPTS = 4


def _key(messages: Messages) -> tuple[tuple[str, str], ...]:
    return tuple((message["role"], message["content"]) for message in messages)


class PromptEncoder:
    """Counts prompt tokens (``PromptBuilder``'s ``count_tokens``) and remembers the ids of
    the last prompts it counted. ``encoded_by`` names the model whose tokenizer made them: an
    engine takes the ids only if they are its own (a job prepared before a model switch is
    encoded again by the new model)."""

    def __init__(self, engine: Engine) -> None:
        self.encoder = ChatPromptEncoder(copy.deepcopy(engine.tokenizer), remembering=True)
        self.encoded_by = engine.info.model
        self._recent: OrderedDict[tuple[tuple[str, str], ...], EncodedPrompt] = OrderedDict()

    def __call__(self, messages: list[dict[str, str]]) -> int:
        encoded = self.encoder.encode_with_prefix(messages)
        key = _key(messages)
        self._recent[key] = encoded
        self._recent.move_to_end(key)
        while len(self._recent) > REMEMBERED_PROMPTS:
            self._recent.popitem(last=False)
        return len(encoded.ids)

    def encoded(self, messages: Messages) -> EncodedPrompt | None:
        """The encoding of ``messages`` if they were among the last prompts counted."""
        return self._recent.get(_key(messages))


def own_token_counter(engine: Engine) -> PromptEncoder:
    """The engine's prompt-token count, on the preparer thread's own copy of its tokenizer."""
    return PromptEncoder(engine)
