"""The bundled example businesses are fair tests of the router: each bundle reads cleanly, every
question its knowledge answers can be answered from what the bundle says in the question's
language, and the tenant's fallback answer is right exactly for the questions it cannot answer
(a pattern loose enough to pass the fallback would count "I don't know" as an answer)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatq.evaluation.questions import Question, QuestionKind, QuestionSet, load_question_set
from chatq.evaluation.scoring import score_answer
from chatq.knowledge_files import (
    KnowledgeSet,
    read_intents,
    read_knowledge,
    read_tenant_settings,
)
from shared.knowledge.schemas import TenantSettings

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
BUSINESSES = ("shop", "helpdesk", "hotel")
# the kinds whose answer is a fact the bundle states (rules may fill templates from a backend,
# follow-ups need the first turn's answer)
FROM_THE_KNOWLEDGE = (QuestionKind.FAQ, QuestionKind.DOCUMENT)


def _bundle(name: str) -> tuple[KnowledgeSet, TenantSettings, QuestionSet]:
    folder = EXAMPLES / name
    knowledge = read_knowledge([folder / "documents", folder / "faq.yaml"])
    read_intents(folder / "intents.yaml")  # raises on a bad intent
    return (
        knowledge,
        read_tenant_settings(folder / "tenant.yaml"),
        load_question_set(folder / "eval.yaml"),
    )


def _texts_in(knowledge: KnowledgeSet, lang: str) -> list[str]:
    """Every paragraph (and FAQ answer) of the bundle written in ``lang``."""
    texts = [entry.answer for entry in knowledge.faq.values() if entry.lang in (None, lang)]
    for document in knowledge.documents.values():
        if document.lang in (None, lang):
            texts += [part for part in re.split(r"\n\s*\n", document.text) if part.strip()]
    return texts


def _group_matches(group: list[str], texts: list[str]) -> bool:
    return any(re.search(pattern, text, re.IGNORECASE) for pattern in group for text in texts)


@pytest.mark.parametrize("name", BUSINESSES)
def test_every_fact_asked_for_is_stated_in_the_questions_language(name: str) -> None:
    knowledge, _, questions = _bundle(name)
    unstated = [
        (question.id, group)
        for question in questions.questions
        if question.kind in FROM_THE_KNOWLEDGE
        for group in question.expect.all_of
        if not _group_matches(group, _texts_in(knowledge, question.lang.value))
    ]
    assert not unstated


@pytest.mark.parametrize("name", BUSINESSES)
def test_the_fallback_answer_is_right_only_where_the_knowledge_has_no_answer(name: str) -> None:
    _, settings, questions = _bundle(name)
    fallback = settings.fallback_answer
    assert fallback is not None

    def fallback_passes(question: Question) -> bool:
        return score_answer(question, fallback.pick(question.lang.value)).correct

    wrongly_passed = [
        q.id
        for q in questions.questions
        if q.kind in (*FROM_THE_KNOWLEDGE, QuestionKind.MULTITURN) and fallback_passes(q)
    ]
    wrongly_failed = [
        q.id
        for q in questions.questions
        if q.kind is QuestionKind.UNANSWERABLE and not fallback_passes(q)
    ]
    assert (wrongly_passed, wrongly_failed) == ([], [])


@pytest.mark.parametrize("name", BUSINESSES)
def test_each_set_asks_every_kind_in_both_languages(name: str) -> None:
    _, _, questions = _bundle(name)
    asked = {(q.kind, q.lang.value) for q in questions.questions}
    assert asked == {(kind, lang) for kind in QuestionKind for lang in ("en", "zh")}
    assert len(questions.questions) >= 50
