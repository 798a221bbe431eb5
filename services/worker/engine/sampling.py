"""Choosing the next token for every row of a batch, each row with its own parameters.

Greedy rows take the arg-max; sampling rows apply their temperature and nucleus (top-p) and
draw from their own seeded generator, so a seeded request gives the same answer whatever else
shares its batch.

A row whose logits or parameters cannot give a token (NaN or infinite logits, a temperature so
small that the scaled logits overflow) fails alone: it is reported in ``ChosenTokens.failures``
and the other rows get their tokens as if it were not there. One job's numbers must never fail
another job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from services.worker.engine.base import GenerationError
from shared.messaging.schemas import GenerationParams


@dataclass
class ChosenTokens:
    tokens: torch.Tensor  # [batch]: one id per row (0 for a failed row, which must not go on)
    failures: dict[int, GenerationError] = field(default_factory=dict)  # row → why


class SamplingError(ValueError):
    pass


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
) -> ChosenTokens:
    """One token id per row of ``logits`` ([batch, vocab]).

    ``suppress[i]`` lists token ids row ``i`` may not produce yet (its stop tokens, while it
    is below its ``min_new_tokens``).
    """
    logits = logits.float()
    # checked before suppression adds its own -inf: NaN or +inf anywhere, or nothing finite.
    # A row's maximum says all three at once (NaN wins a max, then +inf; only a row with
    # nothing finite has -inf as its maximum), in one vectorised pass: checking the three
    # separately cost ~8 ms a step at batch 16, a tenth of the decode step itself.
    broken = ~torch.isfinite(logits.amax(dim=-1))
    for row, banned in enumerate(suppress):
        if banned:
            logits[row, list(banned)] = -torch.inf
    chosen = _argmax_rows(logits)
    failures: dict[int, GenerationError] = {}
    for row in broken.nonzero().flatten().tolist():
        failures[row] = GenerationError(
            "invalid_logits", "the model produced NaN or infinite scores for this sequence"
        )
    for row, (row_params, generator) in enumerate(zip(params, generators, strict=True)):
        if row in failures or row_params.greedy:
            continue
        try:
            chosen[row] = _sample_row(logits[row], row_params, generator)
        except (SamplingError, RuntimeError) as error:
            failures[row] = GenerationError("sampling_failed", f"sampling failed: {error}")
    for row in failures:
        chosen[row] = 0
    return ChosenTokens(chosen, failures)


def _argmax_rows(logits: torch.Tensor) -> torch.Tensor:
    """Each row's arg-max. On the CPU numpy's vectorised arg-max takes ~0.2 ms at batch 16
    where torch's takes ~2 ms; both return the first of equal maxima."""
    if logits.device.type != "cpu":
        return torch.argmax(logits, dim=-1)
    return torch.from_numpy(logits.numpy().argmax(axis=-1))


def _sample_row(
    logits: torch.Tensor, params: GenerationParams, generator: torch.Generator | None
) -> torch.Tensor:
    probabilities = torch.softmax(logits / params.temperature, dim=-1)
    if not bool(torch.isfinite(probabilities).all()) or not float(probabilities.sum()) > 0:
        raise SamplingError(
            f"temperature {params.temperature:g} turns the scores into NaN or infinity"
        )
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probabilities, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        outside = cumulative - sorted_probs >= params.top_p
        sorted_probs[outside] = 0.0
        probabilities = torch.zeros_like(probabilities).scatter(0, order, sorted_probs)
    return torch.multinomial(probabilities, 1, generator=generator)[0]
