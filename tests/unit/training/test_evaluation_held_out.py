"""``evaluate_model`` end to end on the tiny model, and the prompts it gives the engine: the
worker's own (system prompt unless the example brings one)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from services.worker.engine import GenerationRequest, load_engine
from services.worker.engine.chat_prompt import ChatPromptEncoder
from services.worker.prompt import PromptBuilder
from shared.config import get_settings
from shared.messaging.schemas import GenerationParams
from shared.model_layout import ModelNotBuiltError
from training.data.examples import ChatExample
from training.evaluation.answers import serving_messages
from training.evaluation.facts import facts_stated
from training.evaluation.held_out import evaluate_model

MAX_NEW_TOKENS = 12

EXAMPLES = [
    ChatExample.model_validate(
        {
            "messages": [
                {"role": "user", "content": "What is your refund policy?"},
                {"role": "assistant", "content": "Items can be returned within 30 days."},
            ],
            "lang": "en",
            "facts": ["30 days"],
        }
    ),
    ChatExample.model_validate(
        {
            "messages": [
                {"role": "system", "content": "You are the shop's assistant."},
                {"role": "user", "content": "退款政策是什么？"},
                {"role": "assistant", "content": "7天内可以退货。"},
            ],
            "lang": "zh",
            "facts": ["7天"],
        }
    ),
    ChatExample.model_validate(
        {
            "messages": [
                {"role": "user", "content": "Where is my order?"},
                {"role": "assistant", "content": "Your order has shipped."},
                {"role": "user", "content": "When will it arrive?"},
                {"role": "assistant", "content": "In two to three business days."},
            ],
            "lang": "en",
        }
    ),
]


@pytest.fixture(scope="module")
def prompts(tiny_model_dir: Path) -> PromptBuilder:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir / "onnx", local_files_only=True)
    encoder = ChatPromptEncoder(tokenizer)
    return PromptBuilder("the configured prompt", 1536, lambda m: len(encoder.encode(m)))


def test_an_example_without_a_system_turn_gets_the_configured_one(prompts: PromptBuilder) -> None:
    assert serving_messages(EXAMPLES[0], prompts) == [
        {"role": "system", "content": "the configured prompt"},
        {"role": "user", "content": "What is your refund policy?"},
    ]


def test_an_examples_own_system_turn_wins(prompts: PromptBuilder) -> None:
    assert serving_messages(EXAMPLES[1], prompts)[0] == {
        "role": "system",
        "content": "You are the shop's assistant.",
    }


def test_earlier_turns_come_before_the_question(prompts: PromptBuilder) -> None:
    assert [m["content"] for m in serving_messages(EXAMPLES[2], prompts)] == [
        "the configured prompt",
        "Where is my order?",
        "Your order has shipped.",
        "When will it arrive?",
    ]


def test_a_system_turn_inside_the_conversation_is_refused(prompts: PromptBuilder) -> None:
    example = ChatExample.model_validate(
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Refunds?"},
                {"role": "assistant", "content": "30 days."},
            ],
            "lang": "en",
        }
    )
    with pytest.raises(ValueError, match="only the first turn"):
        serving_messages(example, prompts)


def test_an_answer_must_follow_a_question(prompts: PromptBuilder) -> None:
    example = ChatExample.model_validate(
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "assistant", "content": "30 days."},
            ],
            "lang": "en",
        }
    )
    with pytest.raises(ValueError, match="customer's question"):
        serving_messages(example, prompts)


@pytest.fixture(scope="module")
def tiny_scores(tiny_model_dir: Path) -> Any:
    return evaluate_model(
        tiny_model_dir, list(EXAMPLES), max_new_tokens=MAX_NEW_TOKENS, progress=False
    )


def test_the_answers_are_the_workers_greedy_answers(tiny_model_dir: Path, tiny_scores: Any) -> None:
    settings = get_settings()
    engine = load_engine(settings.model_copy(update={"model_dir": tiny_model_dir}))
    system = {"role": "system", "content": settings.system_prompt}
    conversations = [
        [system, {"role": "user", "content": "What is your refund policy?"}],
        [
            {"role": "system", "content": "You are the shop's assistant."},
            {"role": "user", "content": "退款政策是什么？"},
        ],
        [
            system,
            {"role": "user", "content": "Where is my order?"},
            {"role": "assistant", "content": "Your order has shipped."},
            {"role": "user", "content": "When will it arrive?"},
        ],
    ]
    params = GenerationParams(max_new_tokens=MAX_NEW_TOKENS)
    alone = [
        engine.generate([GenerationRequest("one", messages, params)])[0].text
        for messages in conversations
    ]
    assert [record.answer for record in tiny_scores.records] == alone


def test_the_figures_come_from_the_records(tiny_scores: Any) -> None:
    records = tiny_scores.records
    assert tiny_scores.examples == 3
    assert [r.question for r in records] == [
        "What is your refund policy?",
        "退款政策是什么？",
        "When will it arrive?",
    ]
    assert [r.reference for r in records] == [example.answer for example in EXAMPLES]
    for record, example in zip(records, EXAMPLES, strict=True):
        assert record.facts_hit == facts_stated(record.answer, example.facts)
        assert record.finish_reason in {"stop", "length"}
        assert 1 <= record.answer_tokens <= MAX_NEW_TOKENS
        assert -1.0 <= record.similarity <= 1.0
        assert record.perplexity > 1.0
    assert records[2].states_all_facts is None  # no facts: not counted
    assert tiny_scores.fact_accuracy.total == 2
    assert tiny_scores.fact_accuracy.hits == sum(bool(r.states_all_facts) for r in records)
    assert set(tiny_scores.fact_accuracy_by_lang) == {"en", "zh"}
    assert tiny_scores.fact_accuracy_by_lang["en"].total == 1
    assert tiny_scores.similarity == pytest.approx(
        statistics.fmean(r.similarity for r in records), abs=1e-3
    )
    en = [r for r in records if r.lang == "en"]
    en_nll = sum(math.log(r.perplexity) * r.reference_tokens for r in en)
    assert tiny_scores.perplexity_by_lang["en"] == pytest.approx(
        math.exp(en_nll / sum(r.reference_tokens for r in en)), rel=1e-3
    )
    assert tiny_scores.perplexity_by_lang["zh"] == pytest.approx(records[1].perplexity, rel=1e-3)
    assert tiny_scores.engine == "onnxruntime:fp32"


def test_a_folder_with_no_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelNotBuiltError, match="chatq model build"):
        evaluate_model(tmp_path, list(EXAMPLES), progress=False)


def test_a_blank_fact_is_refused_before_anything_runs(tiny_model_dir: Path) -> None:
    example = EXAMPLES[0].model_copy(update={"facts": [" "]})
    with pytest.raises(ValueError, match="example 0: the fact"):
        evaluate_model(tiny_model_dir, [example], progress=False)
