"""Batched decoding as a data structure (after text-generation-inference's ``Batch``).

A ``DecodeBatch`` holds the sequences decoding together: their KV cache rows, attention mask
and next input token. It can be built from new requests (``prefill``), advanced one token
(``step``), filtered (finished sequences leave at once instead of burning decode steps until the
longest one ends) and concatenated (new requests join a running batch between steps:
continuous batching). Rows are left-padded; the columns every row pads are trimmed after each
filter, so padding stays small. A sequence whose next token cannot be chosen (broken logits, a
sampling error) finishes at once with an error, and the others go on without it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from services.worker.engine.base import (
    GenerationError,
    GenerationRequest,
    GenerationResult,
    clean_text,
)
from services.worker.engine.sampling import make_generator, next_tokens

PastKeyValues = tuple[tuple[torch.Tensor, torch.Tensor], ...]


class StepModel(Protocol):
    """One forward pass of a causal LM with a KV cache, and how that cache's rows leave and
    join a batch (``CacheRows``: new tensors, unless the model decodes in place)."""

    @property
    def cache_rows(self) -> CacheRows: ...

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past: PastKeyValues | None,
    ) -> tuple[torch.Tensor, PastKeyValues]:
        """Logits of the last position ([batch, vocab]) and the extended cache."""
        ...


@dataclass
class ActiveSequence:
    request: GenerationRequest
    prompt_tokens: int
    generator: torch.Generator | None
    started: float = field(default_factory=time.perf_counter)
    tokens: list[int] = field(default_factory=list)
    peak_batch_size: int = 0
    finish_reason: str | None = None
    text: str | None = None
    error: GenerationError | None = None


@dataclass
class PaddingStats:
    """Positions the model attended to, and how many of them were padding."""

    positions: int = 0
    padding: int = 0

    def add(self, mask: torch.Tensor) -> None:
        self.positions += mask.numel()
        self.padding += int(mask.numel() - mask.sum())

    @property
    def ratio(self) -> float:
        return self.padding / self.positions if self.positions else 0.0


class Finisher:
    """Decides when a sequence is done and what its text is."""

    def __init__(self, tokenizer: Any, stop_token_ids: set[int]) -> None:
        self.tokenizer = tokenizer
        self.stop_token_ids = stop_token_ids

    def update(self, sequence: ActiveSequence, token: int) -> None:
        params = sequence.request.params
        if token in self.stop_token_ids:
            sequence.finish_reason = "stop"
        else:
            sequence.tokens.append(token)
            if params.stop:
                text = self.tokenizer.decode(sequence.tokens, skip_special_tokens=True)
                cut = min((i for s in params.stop if (i := text.find(s)) >= 0), default=-1)
                if cut >= 0:
                    sequence.finish_reason = "stop"
                    sequence.text = text[:cut]
        if sequence.finish_reason is None and len(sequence.tokens) >= params.max_new_tokens:
            sequence.finish_reason = "length"

    def fail(self, sequence: ActiveSequence, error: GenerationError) -> None:
        sequence.finish_reason = "error"
        sequence.error = error

    def result(self, sequence: ActiveSequence) -> GenerationResult:
        if sequence.error is not None:
            return GenerationResult.failed(
                sequence.request.request_id, sequence.error, sequence.prompt_tokens
            )
        text = sequence.text
        if text is None:
            text = self.tokenizer.decode(sequence.tokens, skip_special_tokens=True)
        # a stop token counts: the model spent a step producing it
        completion = len(sequence.tokens) + (
            sequence.finish_reason == "stop" and sequence.text is None
        )
        return GenerationResult(
            request_id=sequence.request.request_id,
            text=clean_text(text),
            prompt_tokens=sequence.prompt_tokens,
            completion_tokens=completion,
            finish_reason="stop" if sequence.finish_reason == "stop" else "length",
            batch_size=sequence.peak_batch_size,
            inference_ms=round((time.perf_counter() - sequence.started) * 1000, 3),
            token_ids=tuple(sequence.tokens),
        )


@dataclass
class DecodeBatch:
    sequences: list[ActiveSequence]
    past: PastKeyValues
    attention_mask: torch.Tensor  # [batch, past length]: 1 for real tokens, 0 for left padding
    last_tokens: torch.Tensor  # [batch, 1]: sampled, not yet in the cache

    def __len__(self) -> int:
        return len(self.sequences)

    @classmethod
    def prefill(
        cls,
        model: StepModel,
        finisher: Finisher,
        requests: Sequence[GenerationRequest],
        prompts: Sequence[list[int]],
        pad_token_id: int,
        stats: PaddingStats,
    ) -> DecodeBatch:
        width = max(len(prompt) for prompt in prompts)
        input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            attention_mask[row, width - len(prompt) :] = 1
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        stats.add(attention_mask)
        started = time.perf_counter()  # a sequence's inference time includes its prefill
        logits, past = model.forward(input_ids, attention_mask, position_ids, None)
        sequences = [
            ActiveSequence(request, len(prompt), make_generator(request.params), started)
            for request, prompt in zip(requests, prompts, strict=True)
        ]
        batch = cls(
            sequences, past, attention_mask, torch.zeros((len(prompts), 1), dtype=torch.long)
        )
        batch._choose(logits, finisher)
        return batch

    @classmethod
    def prefill_after_prefix(
        cls,
        model: StepModel,
        finisher: Finisher,
        request: GenerationRequest,
        prompt: list[int],
        prefix_past: PastKeyValues,
        stats: PaddingStats,
    ) -> DecodeBatch:
        """A batch of one whose prompt starts with a prefix already in the cache
        (``prefix_past``, batch 1): only the rest of the prompt runs, after it. No padding: the
        prefix's tokens and the prompt's own are one row."""
        prefix_length = prefix_past[0][0].shape[2]
        attention_mask = torch.ones((1, len(prompt)), dtype=torch.long)
        position_ids = torch.arange(prefix_length, len(prompt), dtype=torch.long).unsqueeze(0)
        input_ids = torch.tensor([prompt[prefix_length:]], dtype=torch.long)
        stats.add(attention_mask)
        started = time.perf_counter()
        logits, past = model.forward(input_ids, attention_mask, position_ids, prefix_past)
        sequence = ActiveSequence(request, len(prompt), make_generator(request.params), started)
        batch = cls([sequence], past, attention_mask, torch.zeros((1, 1), dtype=torch.long))
        batch._choose(logits, finisher)
        return batch

    def row_prefix(self, row: int, length: int) -> PastKeyValues:
        """The KV cache of the first ``length`` tokens of row ``row`` (after its left padding),
        copied out as a batch of one: for ``PrefixCache``, before any step or filter."""
        start = int(self.attention_mask[row].nonzero()[0])
        return tuple(
            (
                key[row : row + 1, :, start : start + length].clone(),
                value[row : row + 1, :, start : start + length].clone(),
            )
            for key, value in self.past
        )

    def step(self, model: StepModel, finisher: Finisher, stats: PaddingStats) -> None:
        attention_mask = torch.cat(
            [self.attention_mask, torch.ones((len(self), 1), dtype=torch.long)], dim=1
        )
        position_ids = attention_mask.sum(dim=1, keepdim=True) - 1
        stats.add(attention_mask)
        logits, self.past = model.forward(self.last_tokens, attention_mask, position_ids, self.past)
        self.attention_mask = attention_mask
        self._choose(logits, finisher)

    def _choose(self, logits: torch.Tensor, finisher: Finisher) -> None:
        suppress = [
            sorted(finisher.stop_token_ids)
            if len(s.tokens) < s.request.params.min_new_tokens
            else ()
            for s in self.sequences
        ]
        chosen = next_tokens(
            logits,
            [s.request.params for s in self.sequences],
            [s.generator for s in self.sequences],
            suppress,
        )
        for row, (sequence, token) in enumerate(
            zip(self.sequences, chosen.tokens.tolist(), strict=True)
        ):
            sequence.peak_batch_size = max(sequence.peak_batch_size, len(self))
            if row in chosen.failures:
                finisher.fail(sequence, chosen.failures[row])  # it leaves at the next filter
            else:
                finisher.update(sequence, token)
        self.last_tokens = chosen.tokens.unsqueeze(1)

    def finished(self) -> list[ActiveSequence]:
        return [s for s in self.sequences if s.finish_reason is not None]

    def filter(self, keep: list[int], rows: CacheRows | None = None) -> DecodeBatch | None:
        """The batch without the rows not in ``keep``; None if none are left. ``rows`` moves the
        KV cache's rows (copies by default); it may return them in another order, which the
        sequences, mask and next tokens follow."""
        if not keep:
            return None
        if len(keep) == len(self):
            return self
        host = RowIndex(keep)
        # columns that every remaining row pads are dead weight: cut them (or the cache says
        # how many it cut)
        first = int(
            self.attention_mask.index_select(0, host.on(self.attention_mask))
            .any(dim=0)
            .nonzero()[0]
        )
        past, order, cut = (rows or COPIED_ROWS).keep(self.past, keep, first)
        index = host if order == keep else RowIndex(order)
        return DecodeBatch(
            [self.sequences[i] for i in order],
            past,
            self.attention_mask.index_select(0, index.on(self.attention_mask))[:, cut:],
            self.last_tokens.index_select(0, index.on(self.last_tokens)),
        )

    @staticmethod
    def concatenate(
        first: DecodeBatch, second: DecodeBatch, rows: CacheRows | None = None
    ) -> DecodeBatch:
        """One batch of both, the shorter cache left-padded to the longer one; ``rows`` joins
        the KV caches (copies by default)."""
        width = max(first.attention_mask.shape[1], second.attention_mask.shape[1])
        return DecodeBatch(
            first.sequences + second.sequences,
            (rows or COPIED_ROWS).join(first.past, second.past, width),
            torch.cat([_left_padded_mask(b.attention_mask, width) for b in (first, second)]),
            torch.cat([first.last_tokens, second.last_tokens], dim=0),
        )


class CacheRows(Protocol):
    """How a batch's KV cache loses rows and gains them. The default copies into new tensors
    (``CopiedRows``); the CPU's in-place decoding moves rows within one buffer instead
    (``kv_in_place.SlabRows``)."""

    def keep(
        self, past: PastKeyValues, rows: list[int], first_column: int
    ) -> tuple[PastKeyValues, list[int], int]:
        """The cache of ``rows``: (the cache, which old row each of its rows is, how many
        leading columns it dropped: ``first_column``, the columns no kept row uses, or 0)."""
        ...

    def join(self, first: PastKeyValues, second: PastKeyValues, width: int) -> PastKeyValues:
        """One cache of ``first``'s rows then ``second``'s, each left-padded to ``width``."""
        ...


class CopiedRows:
    """Rows selected and joined into new tensors (on the cache's own device)."""

    def keep(
        self, past: PastKeyValues, rows: list[int], first_column: int
    ) -> tuple[PastKeyValues, list[int], int]:
        index = RowIndex(rows)
        kept = tuple(
            (
                key.index_select(0, index.on(key))[:, :, first_column:],
                value.index_select(0, index.on(value))[:, :, first_column:],
            )
            for key, value in past
        )
        return kept, rows, first_column

    def join(self, first: PastKeyValues, second: PastKeyValues, width: int) -> PastKeyValues:
        return tuple(
            (
                torch.cat([_left_padded(key, width), _left_padded(other_key, width)], dim=0),
                torch.cat([_left_padded(value, width), _left_padded(other_value, width)], dim=0),
            )
            for (key, value), (other_key, other_value) in zip(first, second, strict=True)
        )


COPIED_ROWS = CopiedRows()


class RowIndex:
    """Row numbers as an index tensor on the device of whatever they select from.

    The mask and the next tokens live on the host (sampling runs there); the KV cache lives
    where the runtime left it: on the GPU under IO binding, and ``index_select`` takes an index
    only from its own tensor's device. One copy per device, not one per layer.
    """

    def __init__(self, rows: Sequence[int]) -> None:
        self._host = torch.tensor(rows, dtype=torch.long)
        self._by_device: dict[torch.device, torch.Tensor] = {self._host.device: self._host}

    def on(self, tensor: torch.Tensor) -> torch.Tensor:
        index = self._by_device.get(tensor.device)
        if index is None:
            index = self._by_device[tensor.device] = self._host.to(tensor.device)
        return index


def _left_padded_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - mask.shape[1]
    if missing == 0:
        return mask
    return torch.cat([torch.zeros((mask.shape[0], missing), dtype=mask.dtype), mask], dim=1)


def _left_padded(cache: torch.Tensor, width: int) -> torch.Tensor:
    """A cache tensor ([batch, heads, tokens, head size]) with zeros before its tokens, up to
    ``width`` tokens."""
    missing = width - cache.shape[2]
    if missing == 0:
        return cache
    shape = list(cache.shape)
    shape[2] = missing
    return torch.cat([cache.new_zeros(shape), cache], dim=2)
