"""Our re-implementation of alt-profanity-check's score gives the package's own numbers."""

from __future__ import annotations

import pytest

from shared.moderation.classifier import ProfanityClassifier

TEXTS = [
    "damn good service",
    "kill the process",
    "you are an idiot",
    "I want a refund now",
    "fuck you",
    "the the the",
    "",
    "我要退款",
    "What the hell is going on with my order? Third time I ask.",
]


def test_scores_match_the_package() -> None:
    predict_prob = pytest.importorskip("profanity_check").predict_prob
    ours = ProfanityClassifier()
    expected = predict_prob(TEXTS)
    for text, score in zip(TEXTS, expected, strict=True):
        assert ours.score(text) == pytest.approx(float(score), abs=1e-9), text


def test_scores_rank_offensive_text_high() -> None:
    classifier = ProfanityClassifier()
    assert classifier.score("you are an idiot") > 0.99
    assert classifier.score("I want a refund now") < 0.1
