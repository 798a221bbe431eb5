"""Perplexity of reference answers: only the answer's tokens are scored, and batching (left
padding, position ids) changes nothing. Checked against a token-by-token computation on the
tiny model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from services.worker.engine.chat_prompt import ChatPromptEncoder
from shared.model_layout import ModelLayout
from training.evaluation.perplexity import (
    AnswerLoss,
    answer_losses,
    answer_token_ids,
    corpus_perplexity,
    load_reference_model,
)

SYSTEM = {"role": "system", "content": "You are a friendly, concise customer-support assistant."}
CONVERSATIONS = [
    [SYSTEM, {"role": "user", "content": "What is your refund policy?"}],
    [
        SYSTEM,
        {"role": "user", "content": "Where is my order?"},
        {"role": "assistant", "content": "Your order has shipped."},
        {"role": "user", "content": "Can I change my delivery address?"},
    ],
    [SYSTEM, {"role": "user", "content": "How do I reset my router?"}],
]
ANSWERS = [
    "Items can be returned within thirty days for a full refund.",
    "Yes, before the order ships.",
    "Hold the reset button for ten seconds, then wait for the light.",
]


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path) -> tuple[Any, Any]:
    return load_reference_model(ModelLayout(tiny_model_dir).pytorch_dir)


def token_by_token_nll(model: Any, prompt: list[int], answer: list[int]) -> float:
    """Each answer token's probability from a forward pass over everything before it, alone."""
    nll = 0.0
    with torch.inference_mode():
        for position, token in enumerate(answer):
            context = torch.tensor([prompt + answer[:position]])
            logits = model(input_ids=context).logits[0, -1].double()
            nll -= float(torch.log_softmax(logits, dim=-1)[token])
    return nll


def test_answer_losses_score_the_answer_tokens_alone(reference: tuple[Any, Any]) -> None:
    model, tokenizer = reference
    losses = answer_losses(model, tokenizer, CONVERSATIONS, ANSWERS, batch_size=3, progress=False)

    encoder = ChatPromptEncoder(tokenizer)
    for messages, answer, loss in zip(CONVERSATIONS, ANSWERS, losses, strict=True):
        answer_ids = answer_token_ids(tokenizer, answer)
        expected = token_by_token_nll(model, encoder.encode(messages), answer_ids)
        assert loss.tokens == len(answer_ids)
        assert loss.nll == pytest.approx(expected, rel=1e-4)
        assert loss.perplexity == pytest.approx(math.exp(expected / len(answer_ids)), rel=1e-4)


def test_batch_size_does_not_change_the_losses(reference: tuple[Any, Any]) -> None:
    model, tokenizer = reference
    alone = answer_losses(model, tokenizer, CONVERSATIONS, ANSWERS, batch_size=1, progress=False)
    together = answer_losses(model, tokenizer, CONVERSATIONS, ANSWERS, batch_size=3, progress=False)
    for one, batched in zip(alone, together, strict=True):
        assert batched.tokens == one.tokens
        assert batched.nll == pytest.approx(one.nll, rel=1e-4)


def test_the_answer_ends_with_the_end_token_and_keeps_special_text_as_text(
    reference: tuple[Any, Any],
) -> None:
    _, tokenizer = reference
    ids = answer_token_ids(tokenizer, "see <|im_end|> here")
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.eos_token_id not in ids[:-1]  # the typed marker is text, not the token


def test_the_prompt_conditions_the_answer(reference: tuple[Any, Any]) -> None:
    model, tokenizer = reference
    other = [[SYSTEM, {"role": "user", "content": "The weather is nice today."}]]
    same_answer = [ANSWERS[0]]
    first = answer_losses(model, tokenizer, CONVERSATIONS[:1], same_answer, progress=False)
    second = answer_losses(model, tokenizer, other, same_answer, progress=False)
    assert first[0].tokens == second[0].tokens
    assert first[0].nll != pytest.approx(second[0].nll, rel=1e-6)


def test_corpus_perplexity_weighs_every_token_once() -> None:
    losses = [AnswerLoss(nll=2.0, tokens=1), AnswerLoss(nll=3.0, tokens=4)]
    assert corpus_perplexity(losses) == pytest.approx(math.exp(5.0 / 5))
    assert corpus_perplexity([]) is None
