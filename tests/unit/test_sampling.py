"""The sampler chooses a token per row, and a row that cannot get one fails alone."""

from __future__ import annotations

import torch

from services.worker.engine.sampling import make_generator, next_tokens
from shared.messaging.schemas import GenerationParams

GREEDY = GenerationParams(max_new_tokens=4)
WARM = GenerationParams(max_new_tokens=4, temperature=0.7, seed=1)
# what the API refuses now but a message on the broker can still carry (issue 8, hole 1)
FROZEN = GenerationParams(max_new_tokens=4, temperature=1e-300, seed=1)


def choose(logits: torch.Tensor, params: list[GenerationParams]):  # type: ignore[no-untyped-def]
    generators = [make_generator(p) for p in params]
    return next_tokens(logits, params, generators, [() for _ in params])


def test_a_temperature_that_overflows_fails_only_its_own_row() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 1.0], [0.0, 1.0, 9.0]])
    chosen = choose(logits, [GREEDY, FROZEN, WARM])
    assert set(chosen.failures) == {1}
    assert chosen.failures[1].code == "sampling_failed"
    assert chosen.tokens[0] == 1
    assert chosen.tokens[2] == choose(logits[2:], [WARM]).tokens[0]  # same draw as alone


def test_nan_or_infinite_logits_fail_only_their_own_row() -> None:
    logits = torch.tensor(
        [[0.0, 5.0, 1.0], [float("nan"), 0.0, 1.0], [0.0, float("inf"), 1.0], [2.0, 0.0, 1.0]]
    )
    chosen = choose(logits, [GREEDY, GREEDY, WARM, GREEDY])
    assert {row: error.code for row, error in chosen.failures.items()} == {
        1: "invalid_logits",
        2: "invalid_logits",
    }
    assert chosen.tokens.tolist()[0::3] == [1, 0]


def test_suppressed_tokens_are_not_mistaken_for_broken_logits() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0]])
    chosen = next_tokens(logits, [GREEDY], [None], [[1]])
    assert chosen.failures == {}
    assert chosen.tokens.tolist() == [2]


def test_a_row_with_nothing_finite_fails_and_masked_positions_do_not() -> None:
    minus_inf = float("-inf")
    logits = torch.tensor([[minus_inf, minus_inf, minus_inf], [minus_inf, 2.0, minus_inf]])
    chosen = choose(logits, [GREEDY, GREEDY])
    assert {row: error.code for row, error in chosen.failures.items()} == {0: "invalid_logits"}
    assert chosen.tokens.tolist() == [0, 1]


def test_greedy_takes_the_first_of_equal_maxima_as_the_model_generate_does() -> None:
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    assert choose(logits, [GREEDY, GREEDY]).tokens.tolist() == [1, 0]
    assert choose(logits, [GREEDY, GREEDY]).tokens.dtype == torch.long
