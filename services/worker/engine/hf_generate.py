"""Batched generation with transformers' ``generate``: the PyTorch reference engine.

It is an independent implementation of the same contract as chatq's own decode loop, which is
what makes it a fair reference: parity tests and benchmarks compare the two. It answers whole
batches: ``add`` runs ``generate`` to the end and returns every result, so nothing is ever
``active`` between steps. Prompts are encoded
the same way (``Engine.encode_prompt``: the customer's text never becomes special tokens).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

import torch

from services.worker.engine.base import (
    Engine,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    clean_text,
    stop_token_ids,
)
from shared.logs import get_logger
from shared.messaging.schemas import EngineInfo, GenerationParams

log = get_logger(__name__)


class HFGenerateEngine(Engine):
    def __init__(self, model: Any, tokenizer: Any, info: EngineInfo) -> None:
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        # Decoder-only models continue from the last position: pad on the left.
        tokenizer.padding_side = "left"
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self._eos_ids = stop_token_ids(model, tokenizer)

    @property
    def active(self) -> int:
        return 0

    @property
    def answers_whole_batches(self) -> bool:
        return True

    def step(self) -> list[GenerationResult]:
        return []

    def abort(self) -> None:
        """Nothing runs between calls: nothing to drop."""

    def add(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        # generate() takes one parameter set per call: requests that share parameters (the
        # common case: the defaults) run as one batch.
        groups: dict[GenerationParams, list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            groups[request.params].append(index)
        results: list[GenerationResult | None] = [None] * len(requests)
        for params, indices in groups.items():
            group = [requests[i] for i in indices]
            for index, result in zip(indices, self._generate_isolated(group, params), strict=True):
                results[index] = result
        answered = [result for result in results if result is not None]
        if answered and all(result.error is not None for result in answered):
            # nothing to tell one request's fault from the engine's: the jobs are retried
            raise RuntimeError(f"every sequence of the batch failed: {answered[0].error}")
        return answered

    def _generate_isolated(
        self, requests: list[GenerationRequest], params: GenerationParams
    ) -> list[GenerationResult]:
        """The group together; if that fails, each request alone, so that a request the model
        cannot answer fails by itself and the other groups of the batch are not lost."""
        try:
            return self._generate_group(requests, params)
        except Exception as error:
            if len(requests) == 1:
                return [self._failed(requests[0], error)]
        results: list[GenerationResult] = []
        for request in requests:
            try:
                results += self._generate_group([request], params)
            except Exception as error:
                results.append(self._failed(request, error))
        return results

    @staticmethod
    def _failed(request: GenerationRequest, error: Exception) -> GenerationResult:
        log.warning("sequence_generation_failed", request_id=request.request_id, error=repr(error))
        return GenerationResult.failed(
            request.request_id, GenerationError("generation_failed", f"generation failed: {error}")
        )

    def _generate_group(
        self, requests: list[GenerationRequest], params: GenerationParams
    ) -> list[GenerationResult]:
        started = time.perf_counter()
        prompts = [self.prompt_of(request) for request in requests]
        batch = _left_padded(prompts, self.tokenizer.pad_token_id)
        prompt_lengths = [len(prompt) for prompt in prompts]
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "min_new_tokens": params.min_new_tokens or None,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": sorted(self._eos_ids),
        }
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        if params.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            if params.seed is not None:
                torch.manual_seed(params.seed)
        device = next(self.model.parameters()).device
        # generate() passes logits_to_keep=1 to models that take it (Llama, Qwen2, …): the
        # prefill scores only the last position, as the ONNX graph's edit does
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                **kwargs,
            )
        new_tokens = output[:, batch["input_ids"].shape[1] :].tolist()
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        return [
            self._result(request, prompt_length, tokens, len(requests), elapsed_ms)
            for request, prompt_length, tokens in zip(
                requests, prompt_lengths, new_tokens, strict=True
            )
        ]

    def _result(
        self,
        request: GenerationRequest,
        prompt_tokens: int,
        tokens: list[int],
        batch_size: int,
        inference_ms: float,
    ) -> GenerationResult:
        finish_reason: Literal["stop", "length"] = "length"
        for position, token in enumerate(tokens):
            if token in self._eos_ids:
                tokens = tokens[:position]
                finish_reason = "stop"
                break
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        for stop in request.params.stop:
            if (cut := text.find(stop)) >= 0:
                text, finish_reason = text[:cut], "stop"
        return GenerationResult(
            request_id=request.request_id,
            text=clean_text(text),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(tokens) + (finish_reason == "stop"),
            finish_reason=finish_reason,
            batch_size=batch_size,
            inference_ms=inference_ms,
            token_ids=tuple(tokens),
        )


def _left_padded(prompts: list[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of the prompts, padded on the left to one width."""
    width = max(len(prompt) for prompt in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        attention_mask[row, width - len(prompt) :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}
