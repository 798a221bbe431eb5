"""An answer against its question: every group, nothing forbidden, full-width text, Chinese."""

from __future__ import annotations

from typing import Any

import pytest

from chatq.evaluation.questions import Question
from chatq.evaluation.scoring import Score, score_answer


def make_question(expect: dict[str, Any], lang: str = "en") -> Question:
    return Question.model_validate(
        {"id": "q1", "kind": "faq", "lang": lang, "question": "?", "expect": expect}
    )


REFUND = make_question({"all": [["7[- ]?days?", "seven days"], ["packag"]], "none": ["30[- ]days"]})


def test_an_answer_matching_every_group_is_correct() -> None:
    score = score_answer(REFUND, "Returns are accepted within 7 days if the packaging is intact.")

    assert score == Score(correct=True)


def test_any_alternative_of_a_group_is_enough_and_case_does_not_matter() -> None:
    assert score_answer(REFUND, "SEVEN DAYS, in the original PACKAGING.").correct


def test_a_group_that_nothing_matches_is_reported_missing() -> None:
    score = score_answer(REFUND, "You can return it within 7 days.")

    assert not score.correct
    assert score.missing == [["packag"]]
    assert score.forbidden == []


def test_a_forbidden_pattern_makes_an_otherwise_right_answer_incorrect() -> None:
    score = score_answer(REFUND, "7 days (30 days for members), packaging intact.")

    assert not score.correct
    assert score.missing == []
    assert score.forbidden == ["30[- ]days"]


@pytest.mark.parametrize("answer", [None, "", "   \n"])
def test_no_answer_is_incorrect_and_misses_every_group(answer: str | None) -> None:
    score = score_answer(REFUND, answer)

    assert not score.correct
    assert score.missing == [["7[- ]?days?", "seven days"], ["packag"]]


def test_full_width_digits_match_half_width_patterns() -> None:
    question = make_question({"all": [["7天"], ["400-800-1234"]]}, lang="zh")

    assert score_answer(
        question, "七天无理由：收货后７天内可退，电话４００-８００-１２３４。"
    ).correct


def test_full_width_punctuation_in_a_pattern_still_matches_the_answer_it_came_from() -> None:
    question = make_question({"all": [["（每天 9:00"]]}, lang="zh")

    assert score_answer(question, "请致电 400-800-1234（每天 9:00–21:00）。").correct


def test_chinese_patterns_and_forbidden_chinese_phrases() -> None:
    question = make_question(
        {
            "all": [["顺丰|SF"], ["(?<!\\d)1\\s*[-–~至到]\\s*2\\s*天"]],
            "none": ["3\\s*[-–~至到]\\s*5\\s*天"],
        },
        lang="zh",
    )

    assert score_answer(question, "顺丰速运一般1-2天送达。").correct
    wrong = score_answer(question, "顺丰一般3到5天送达。")
    assert not wrong.correct
    assert wrong.missing == [["(?<!\\d)1\\s*[-–~至到]\\s*2\\s*天"]]
    assert wrong.forbidden == ["3\\s*[-–~至到]\\s*5\\s*天"]


def test_a_reference_only_question_is_judged_by_what_must_not_be_said() -> None:
    question = make_question(
        {"reference": "We do not sell gift cards.", "none": ["gift card code"]}
    )

    assert score_answer(question, "Sorry, we have no gift cards.").correct
    assert not score_answer(question, "Your gift card code is X1.").correct


class FixedSimilarity:
    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []

    def similarity(self, a: str, b: str) -> float:
        self.pairs.append((a, b))
        return 0.75


def test_similarity_to_the_reference_is_reported_beside_the_patterns() -> None:
    question = make_question({"all": [["never"]], "reference": "Within seven days."})
    similarity = FixedSimilarity()

    score = score_answer(question, "Within 7 days.", similarity)

    assert not score.correct  # a similar answer is not a correct one
    assert score.similarity == 0.75
    assert similarity.pairs == [("Within 7 days.", "Within seven days.")]


def test_similarity_is_not_asked_without_a_reference_or_an_answer() -> None:
    similarity = FixedSimilarity()

    assert score_answer(REFUND, "7 days, packaging", similarity).similarity is None
    with_reference = make_question({"all": [["x"]], "reference": "x"})
    assert score_answer(with_reference, None, similarity).similarity is None
    assert similarity.pairs == []
