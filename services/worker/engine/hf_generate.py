"""Batched generation with transformers' ``generate``: the PyTorch reference engine.

It is an independent implementation of the same contract as chatq's own decode loop, which is
what makes it a fair reference: parity tests and benchmarks compare the two.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch

from services.worker.engine.base import (
    Engine,
    GenerationRequest,
    GenerationResult,
    clean_text,
    stop_token_ids,
)
from shared.messaging.schemas import EngineInfo, GenerationParams


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

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        # generate() takes one parameter set per call: requests that share parameters (the
        # common case: the defaults) run as one batch.
        groups: dict[GenerationParams, list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            groups[request.params].append(index)
        results: list[GenerationResult | None] = [None] * len(requests)
        for params, indices in groups.items():
            group = [requests[i] for i in indices]
            for index, result in zip(indices, self._generate_group(group, params), strict=True):
                results[index] = result
        return [result for result in results if result is not None]

    def _generate_group(
        self, requests: list[GenerationRequest], params: GenerationParams
    ) -> list[GenerationResult]:
        started = time.perf_counter()
        texts = [self.render_prompt_text(request.messages) for request in requests]
        # The template already holds the special tokens; the tokenizer must not add more.
        batch = self.tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt")
        prompt_lengths = batch["attention_mask"].sum(dim=1).tolist()
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
        finish_reason = "length"
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
