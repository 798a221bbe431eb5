"""Choosing the next token for every row of a batch, each row with its own parameters.

Greedy rows take the arg-max; sampling rows apply their temperature and nucleus (top-p) and
draw from their own seeded generator, so a seeded request gives the same answer whatever else
shares its batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from shared.messaging.schemas import GenerationParams


def make_generator(params: GenerationParams) -> torch.Generator | None:
    if params.greedy:
        return None
    generator = torch.Generator()
    if params.seed is None:
        generator.seed()
    else:
        generator.manual_seed(params.seed)
    return generator


def next_tokens(
    logits: torch.Tensor,
    params: Sequence[GenerationParams],
    generators: Sequence[torch.Generator | None],
    suppress: Sequence[Sequence[int]],
) -> torch.Tensor:
    """One token id per row of ``logits`` ([batch, vocab]).

    ``suppress[i]`` lists token ids row ``i`` may not produce yet (its stop tokens, while it
    is below its ``min_new_tokens``).
    """
    logits = logits.float()
    for row, banned in enumerate(suppress):
        if banned:
            logits[row, list(banned)] = -torch.inf
    chosen = torch.argmax(logits, dim=-1)
    for row, (row_params, generator) in enumerate(zip(params, generators, strict=True)):
        if row_params.greedy:
            continue
        chosen[row] = _sample_row(logits[row], row_params, generator)
    return chosen


def _sample_row(
    logits: torch.Tensor, params: GenerationParams, generator: torch.Generator | None
) -> torch.Tensor:
    probabilities = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probabilities, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        outside = cumulative - sorted_probs >= params.top_p
        sorted_probs[outside] = 0.0
        probabilities = torch.zeros_like(probabilities).scatter(0, order, sorted_probs)
    return torch.multinomial(probabilities, 1, generator=generator)[0]
