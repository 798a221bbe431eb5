"""The bundled instruction set: large enough in both languages, every answer states its facts,
it passes cleaning untouched, it matches its build script, and it holds no evaluation question."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from shared.knowledge.text import normalize_question
from training.data.clean import clean_examples
from training.data.examples import ChatExample, read_examples
from training.data.near_duplicates import jaccard, shingles
from training.data.sources import read_source
from training.datasets import SHOP_INSTRUCTIONS
from training.datasets.build_shop_instructions import build_examples, fallback_answers

REPO_ROOT = Path(__file__).resolve().parents[3]
EVAL_SETS = tuple(
    REPO_ROOT / "examples" / business / "eval.yaml" for business in ("shop", "helpdesk", "hotel")
)


@pytest.fixture(scope="module")
def dataset() -> list[ChatExample]:
    return read_examples(SHOP_INSTRUCTIONS)


@pytest.fixture(scope="module")
def eval_questions() -> list[str]:
    """Every question of the held-out evaluation sets, the earlier turns of a conversation too."""
    questions = []
    for path in EVAL_SETS:
        for item in yaml.safe_load(path.read_text(encoding="utf-8"))["questions"]:
            questions.append(item["question"])
            questions.extend(item.get("turns", []))
    return questions


def customer_turns(dataset: list[ChatExample]) -> list[str]:
    return [turn.content for row in dataset for turn in row.messages if turn.role == "user"]


def test_it_is_large_enough_and_about_half_each_language(dataset: list[ChatExample]) -> None:
    languages = Counter(row.lang for row in dataset)
    assert 300 <= len(dataset) <= 450
    assert set(languages) == {"en", "zh"}
    assert abs(languages["en"] - languages["zh"]) <= 0.1 * len(dataset)


def test_every_row_is_a_seed_row_whose_answer_states_its_facts(dataset: list[ChatExample]) -> None:
    for row in dataset:
        assert row.origin == "seed" and row.split is None
        assert row.facts, row.prompt
        for fact in row.facts:
            assert fact.casefold() in row.answer.casefold(), (fact, row.answer)


def test_answers_are_in_the_language_of_the_question(dataset: list[ChatExample]) -> None:
    for row in dataset:
        chinese = sum("\u4e00" <= char <= "\u9fff" for char in row.answer)
        assert (chinese > 5) == (row.lang == "zh"), row.answer


def test_it_has_paraphrases_conversations_and_answers_for_what_it_cannot_know(
    dataset: list[ChatExample],
) -> None:
    answers = Counter(row.answer for row in dataset)
    assert sum(count >= 2 for count in answers.values()) >= 100  # several wordings per fact
    conversations = [row for row in dataset if len(row.messages) > 2]
    assert Counter(row.lang for row in conversations) == {"en": 8, "zh": 8}
    fallbacks = fallback_answers()
    for lang in ("en", "zh"):
        unknown = [row for row in dataset if row.answer == fallbacks[lang]]
        assert len(unknown) >= 8
        assert all(row.facts == ["support@lumenhome.example", "400-800-1234"] for row in unknown)


def test_no_evaluation_question_is_in_it(
    dataset: list[ChatExample], eval_questions: list[str]
) -> None:
    ours = {normalize_question(text) for text in customer_turns(dataset)}
    copied = [text for text in eval_questions if normalize_question(text) in ours]
    assert copied == []


def test_no_question_is_even_a_close_rewording_of_an_evaluation_question(
    dataset: list[ChatExample], eval_questions: list[str]
) -> None:
    """Below 0.6, the similarity from which a split keeps two questions on one side."""
    ours = [(text, shingles(text)) for text in customer_turns(dataset)]
    for question in eval_questions:
        theirs = shingles(question)
        closest = max(ours, key=lambda pair: jaccard(theirs, pair[1]))
        assert jaccard(theirs, closest[1]) < 0.6, (question, closest[0])


def test_it_passes_cleaning_untouched(dataset: list[ChatExample]) -> None:
    """No duplicate, nothing moderation objects to, and the public contacts it teaches (the
    support line, the router's address) survive anonymisation because they are facts."""
    result = clean_examples(read_source(SHOP_INSTRUCTIONS))
    assert result.report.rows_kept == len(dataset)
    assert not any(result.report.changed.values())
    assert result.examples == dataset


def test_the_committed_file_is_what_the_build_script_writes(dataset: list[ChatExample]) -> None:
    assert build_examples() == dataset
