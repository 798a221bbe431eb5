"""The engine interface: a batch of chat requests in, one result per request out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shared.messaging.schemas import EngineInfo, GenerationParams


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    messages: list[dict[str, str]]  # chat-template messages, system prompt first
    params: GenerationParams


@dataclass(frozen=True)
class GenerationResult:
    request_id: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"]


class Engine(ABC):
    """A causal language model that answers batches of chat requests."""

    info: EngineInfo
    tokenizer: Any  # a transformers tokenizer with a chat template

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Answer every request; the result list is in the order of ``requests``."""

    def render_prompt_text(self, messages: list[dict[str, str]]) -> str:
        """The prompt as the model sees it: the chat template, ending where the answer starts."""
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        text = self.render_prompt_text(messages)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
