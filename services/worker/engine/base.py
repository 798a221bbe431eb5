"""The engine interface: a batch of chat requests in, one result per request out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from services.worker.engine.chat_prompt import ChatPromptEncoder, EncodedPrompt
from shared.messaging.schemas import EngineInfo, GenerationParams


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    messages: list[dict[str, str]]  # chat-template messages, system prompt first
    params: GenerationParams
    # the messages' ids, when the preparer encoded them already, and whose tokenizer did
    prompt_ids: tuple[int, ...] | None = None
    encoded_by: str | None = None
    prompt_prefix: int = 0  # of prompt_ids: EncodedPrompt.shared_prefix


@dataclass(frozen=True)
class GenerationError:
    """Why one sequence failed; the others in its batch go on."""

    code: str  # stable: "sampling_failed", "invalid_logits", "generation_failed"
    message: str


@dataclass(frozen=True)
class GenerationResult:
    request_id: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length", "error"]
    batch_size: int  # the most sequences it was decoded together with (itself included)
    inference_ms: float  # from its prefill to its last token
    token_ids: tuple[int, ...] = ()  # the answer's tokens (for parity checks and benchmarks)
    error: GenerationError | None = None  # set when finish_reason is "error"

    @classmethod
    def failed(
        cls, request_id: str, error: GenerationError, prompt_tokens: int = 0
    ) -> GenerationResult:
        return cls(
            request_id=request_id,
            text="",
            prompt_tokens=prompt_tokens,
            completion_tokens=0,
            finish_reason="error",
            batch_size=0,
            inference_ms=0.0,
            error=error,
        )


# C0 control characters but tab, newline and carriage return: a model can emit them (a random
# or small model easily does), no client wants them, and Postgres text cannot hold NUL.
CONTROL_CHARACTERS = dict.fromkeys(c for c in range(32) if chr(c) not in "\t\n\r")


def clean_text(text: str) -> str:
    """Generated text as it is stored and returned: no control characters, trimmed."""
    return text.translate(CONTROL_CHARACTERS).strip()


def stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Tokens that end an answer: the model's configured end tokens and the tokenizer's."""
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


class Engine(ABC):
    """A causal language model that answers batches of chat requests, one interface for all:
    requests join the running batch (``add``) and the batch advances a token at a time
    (``step``). An engine that can only answer whole batches (the ``generate``-based reference)
    answers every request of an ``add`` before returning, and never has any ``active``."""

    info: EngineInfo
    tokenizer: Any  # a transformers tokenizer with a chat template

    @property
    @abstractmethod
    def active(self) -> int:
        """Sequences decoding now."""

    @abstractmethod
    def add(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Prefill ``requests`` and let them join the running batch; returns those already
        finished (by their first token, or all of them for a whole-batch engine)."""

    @abstractmethod
    def step(self) -> list[GenerationResult]:
        """One decode step for the running batch; returns the sequences it finished."""

    @abstractmethod
    def abort(self) -> None:
        """Drop the running batch (after an error; its jobs are retried elsewhere)."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Answer every request on an idle engine; results in the order of ``requests``."""
        if self.active:
            raise RuntimeError("generate() needs an idle engine; use add() and step()")
        results = {r.request_id: r for r in self.add(requests)}
        while self.active:
            results.update((r.request_id, r) for r in self.step())
        return [results[request.request_id] for request in requests]

    @property
    def answers_whole_batches(self) -> bool:
        """True for an engine whose ``add`` answers every request before it returns (nothing
        joins it between steps): the scheduler gives it whole batches."""
        return False

    @property
    def padding_ratio(self) -> float:
        """Share of the attended positions that were padding, since the engine started."""
        return 0.0

    def encode_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """The prompt's token ids: the chat template, ending where the answer starts. Special
        tokens come from the template only; in the messages' text they stay text."""
        return ChatPromptEncoder(self.tokenizer).encode(messages)

    def prompt_of(self, request: GenerationRequest) -> list[int]:
        """The request's prompt ids: as the preparer encoded them if with this model's
        tokenizer, else encoded here."""
        return self.encoded_prompt_of(request).ids

    def encoded_prompt_of(self, request: GenerationRequest) -> EncodedPrompt:
        """``prompt_of`` with the length of the prefix prompts with the same system prompt
        share."""
        if request.prompt_ids is not None and request.encoded_by == self.info.model:
            return EncodedPrompt(list(request.prompt_ids), request.prompt_prefix)
        return ChatPromptEncoder(self.tokenizer).encode_with_prefix(request.messages)

    def render_prompt_text(self, messages: list[dict[str, str]]) -> str:
        """The prompt as text, for reading (the model gets ``encode_prompt``'s ids)."""
        return ChatPromptEncoder(self.tokenizer).render_text(messages)

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return len(self.encode_prompt(messages))

    def generated_tokens(self, request_id: str) -> Sequence[int] | None:
        """The tokens generated so far for a request still decoding (streaming reads them
        between steps); None when the engine cannot tell (it answers whole batches)."""
        return None
