"""Accuracy per kind, language and route, the route mix, runs side by side, the JSON record."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from chatq.evaluation.questions import Question, QuestionSet
from chatq.evaluation.report import (
    comparison_table,
    incorrect_answers,
    report_record,
    summarise,
    write_report,
)
from chatq.evaluation.runner import Result
from chatq.evaluation.scoring import Score, score_answer


def make_question(id: str, kind: str, lang: str) -> Question:
    return Question.model_validate(
        {
            "id": id,
            "kind": kind,
            "lang": lang,
            "question": f"question {id}",
            "turns": ["earlier"] if kind == "multiturn" else [],
            "expect": {"all": [["right"]], "none": ["wrong"]},
        }
    )


def make_result(
    id: str,
    kind: str,
    lang: str,
    route: str | None,
    answer: str | None,
    latency_ms: float = 100.0,
    similarity: float | None = None,
) -> Result:
    question = make_question(id, kind, lang)
    score = score_answer(question, answer)
    return Result(
        question=question,
        status="completed" if route else "failed",
        answer=answer,
        route=route,
        sources=[],
        intent=None,
        handoff=False,
        latency_ms=latency_ms if route else None,
        job_ids=[f"job-{id}"],
        score=Score(score.correct, score.missing, score.forbidden, similarity),
        error=None if route else "failed: engine_error: boom",
    )


ROUTER_RESULTS = [
    make_result("f1", "faq", "en", "faq", "right", 50, 0.9),
    make_result("f2", "faq", "zh", "faq", "right", 60, 0.8),
    make_result("d1", "document", "en", "knowledge", "right but also wrong", 300),
    make_result("r1", "rule", "zh", "rule", "right", 40),
    make_result("u1", "unanswerable", "en", "fallback", "nothing", 20),
    make_result("m1", "multiturn", "en", None, None),
]
MODEL_RESULTS = [
    make_result(r.question.id, r.question.kind, r.question.lang, "llm", "right" if i < 2 else "no")
    for i, r in enumerate(ROUTER_RESULTS)
]


def test_accuracy_is_counted_overall_and_per_kind_language_and_route() -> None:
    summary = summarise("router", ROUTER_RESULTS)

    assert (summary.overall.correct, summary.overall.total) == (3, 6)
    assert summary.accuracy == 0.5
    assert {k: (t.correct, t.total) for k, t in summary.by_kind.items()} == {
        "faq": (2, 2),
        "document": (0, 1),
        "multiturn": (0, 1),
        "unanswerable": (0, 1),
        "rule": (1, 1),
    }
    assert list(summary.by_kind) == ["faq", "document", "multiturn", "unanswerable", "rule"]
    assert {k: (t.correct, t.total) for k, t in summary.by_lang.items()} == {
        "en": (1, 4),
        "zh": (2, 2),
    }
    assert {k: (t.correct, t.total) for k, t in summary.by_route.items()} == {
        "rule": (1, 1),
        "faq": (2, 2),
        "knowledge": (0, 1),
        "fallback": (0, 1),
        "(none)": (0, 1),
    }


def test_the_route_mix_is_the_share_of_items_per_route() -> None:
    summary = summarise("router", ROUTER_RESULTS)

    assert summary.route_mix == {
        "rule": 1 / 6,
        "faq": 2 / 6,
        "knowledge": 1 / 6,
        "fallback": 1 / 6,
        "(none)": 1 / 6,
    }
    assert sum(summary.route_mix.values()) == pytest.approx(1.0)
    assert summary.not_completed == 1


def test_similarity_and_latency_are_summarised_over_the_items_that_have_them() -> None:
    summary = summarise("router", ROUTER_RESULTS)

    assert summary.mean_similarity == 0.85
    assert summary.latency_p50_ms == 50.0
    assert summary.latency_p95_ms is not None and 200 < summary.latency_p95_ms <= 300


def test_the_comparison_table_has_one_column_per_run() -> None:
    table = comparison_table(
        [summarise("router", ROUTER_RESULTS), summarise("model", MODEL_RESULTS)]
    )
    lines = table.splitlines()

    assert lines[0].split() == ["router", "model"]
    assert set(lines[1]) == {"-"}
    rows = {
        cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[2:])
    }
    assert rows["accuracy"] == ["50.0% (3/6)", "33.3% (2/6)"]
    assert rows["kind faq"] == ["100.0% (2/2)", "100.0% (2/2)"]
    assert rows["lang zh"] == ["100.0% (2/2)", "50.0% (1/2)"]
    assert rows["route llm"] == ["-", "33.3% (2/6)"]
    assert rows["route faq"] == ["100.0% (2/2)", "-"]
    assert rows["llm"] == ["0%", "100%"]
    assert rows["faq"] == ["33%", "0%"]
    assert rows["not completed"] == ["1", "0"]
    assert rows["similarity (mean)"] == ["0.850", "-"]


def test_incorrect_answers_say_what_was_missing_or_forbidden() -> None:
    listing = incorrect_answers(ROUTER_RESULTS, width=40)

    assert "f1" not in listing
    assert "d1 [document/en] route=knowledge status=completed" in listing
    assert "  forbidden: wrong" in listing
    assert "u1 [unanswerable/en] route=fallback" in listing
    assert "  missing: right" in listing
    assert "m1 [multiturn/en] route=(none) status=failed" in listing
    assert "  turn 1: earlier" in listing
    assert "  A: (no answer)" in listing
    assert "  error: failed: engine_error: boom" in listing


def test_long_answers_are_truncated_in_the_listing() -> None:
    long = make_result("x1", "faq", "en", "llm", "no " * 100)

    (answer_line,) = [
        line for line in incorrect_answers([long], width=20).splitlines() if "A:" in line
    ]

    assert answer_line == "  A: " + ("no " * 7)[:19] + "…"


def test_the_json_record_holds_every_run_with_summary_and_answers(tmp_path: Path) -> None:
    question_set = QuestionSet(name="shop", questions=[r.question for r in ROUTER_RESULTS])
    record = report_record(
        question_set, {"router": ROUTER_RESULTS, "model": MODEL_RESULTS}, file="eval.yaml"
    )
    path = tmp_path / "out" / "shop.json"

    write_report(path, record)
    loaded = json.loads(path.read_text(encoding="utf-8"))

    assert loaded["name"] == "shop"
    assert loaded["file"] == "eval.yaml"
    assert loaded["questions"] == 6
    assert list(loaded["runs"]) == ["router", "model"]
    router = loaded["runs"]["router"]
    assert router["summary"]["overall"] == {"correct": 3, "total": 6, "accuracy": 0.5}
    first = router["results"][0]
    assert first["id"] == "f1" and first["correct"] is True and first["route"] == "faq"
    assert router["results"][2]["forbidden"] == ["wrong"]
