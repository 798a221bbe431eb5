"""The base-vs-fine-tuned table: rows, values, changes, and ``chatq eval`` sections."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatq.evaluation.report import RunSummary, Tally
from training.evaluation.compare import Comparison, ComparisonRow, FigureKind, compare_models
from training.evaluation.held_out import HeldOutScores, Share


def scores(
    model_dir: str,
    facts: tuple[int, int],
    facts_en: tuple[int, int],
    facts_zh: tuple[int, int] | None,
    similarity: float,
    perplexity: float,
    perplexity_by_lang: dict[str, float],
) -> HeldOutScores:
    by_lang = {"en": Share(hits=facts_en[0], total=facts_en[1])}
    if facts_zh is not None:
        by_lang["zh"] = Share(hits=facts_zh[0], total=facts_zh[1])
    return HeldOutScores(
        model_dir=model_dir,
        model_name=Path(model_dir).name,
        engine="onnxruntime:fp32",
        examples=10,
        max_new_tokens=96,
        fact_accuracy=Share(hits=facts[0], total=facts[1]),
        fact_accuracy_by_lang=by_lang,
        similarity=similarity,
        similarity_by_lang={},
        perplexity=perplexity,
        perplexity_by_lang=perplexity_by_lang,
        engine_load_s=1.0,
        generation_s=5.0,
        perplexity_s=1.0,
        similarity_s=0.1,
        records=[],
    )


BASE = scores("/m/default", (2, 8), (2, 4), (0, 4), 0.80, 20.0, {"en": 15.0, "zh": 30.0})
TUNED = scores("/m/shop-lora", (6, 8), (3, 4), (3, 4), 0.85, 5.0, {"en": 4.0, "zh": 7.0})


def row(comparison: Comparison, figure: str) -> ComparisonRow:
    return next(r for r in comparison.rows if r.figure == figure)


def table_line(table: str, figure: str) -> str:
    """The line of ``figure`` (its name comes first, then two spaces or more)."""
    return next(line for line in table.splitlines() if re.match(rf"  {figure}(  |$)", line))


def test_rows_hold_each_model_and_its_change_from_the_base() -> None:
    comparison = compare_models(BASE, [TUNED])
    assert list(comparison.columns) == ["base", "shop-lora"]
    assert [r.figure for r in comparison.rows] == [
        "exact facts",
        "exact facts en",
        "exact facts zh",
        "similarity",
        "perplexity",
        "perplexity en",
        "perplexity zh",
    ]
    facts = row(comparison, "exact facts")
    assert facts.kind is FigureKind.SHARE
    assert facts.cells["base"].value == 0.25
    assert (facts.cells["shop-lora"].hits, facts.cells["shop-lora"].total) == (6, 8)
    assert facts.changes["shop-lora"] == pytest.approx(0.5)
    assert row(comparison, "similarity").changes["shop-lora"] == pytest.approx(0.05)
    assert row(comparison, "perplexity zh").changes["shop-lora"] == pytest.approx(-23.0)


def test_the_table_reads_as_percentages_points_and_plain_numbers() -> None:
    table = compare_models(BASE, [TUNED]).table()
    lines = table.splitlines()
    assert lines[0].split() == ["base", "shop-lora", "change"]
    facts = table_line(table, "exact facts")
    assert "25.0% (2/8)" in facts and "75.0% (6/8)" in facts and "+50.0 pt" in facts
    perplexity = table_line(table, "perplexity zh")
    assert perplexity.split()[-3:] == ["30.00", "7.00", "-23.00"]
    assert "held-out (10 examples)" in table
    assert "lower perplexity is better" in table


def test_a_language_a_model_was_not_scored_in_shows_no_value() -> None:
    no_zh = scores("/m/en-only", (1, 4), (1, 4), None, 0.7, 9.0, {"en": 9.0})
    comparison = compare_models(BASE, [no_zh])
    zh = row(comparison, "exact facts zh")
    assert zh.cells["en-only"].value is None
    assert zh.changes["en-only"] is None
    zh_line = table_line(comparison.table(), "exact facts zh")
    assert zh_line.split()[-2:] == ["-", "-"]


def test_several_fine_tuned_models_each_get_a_column_and_a_change() -> None:
    other = scores("/n/shop-lora", (8, 8), (4, 4), (4, 4), 0.9, 3.0, {"en": 3.0, "zh": 3.0})
    comparison = compare_models(BASE, [TUNED, other])
    assert list(comparison.columns) == ["base", "shop-lora", "shop-lora (2)"]
    assert comparison.columns["shop-lora (2)"] == "/n/shop-lora"
    assert row(comparison, "exact facts").changes == {
        "shop-lora": pytest.approx(0.5),
        "shop-lora (2)": pytest.approx(0.75),
    }
    header = comparison.table().splitlines()[0].split()
    assert header == ["base", "shop-lora", "change", "shop-lora", "(2)", "change"]


def summary(label: str, correct: int, en: int, zh: int, similarity: float | None) -> RunSummary:
    return RunSummary(
        label=label,
        overall=Tally(correct, 20),
        by_kind={},
        by_lang={"en": Tally(en, 10), "zh": Tally(zh, 10)},
        by_route={},
        route_mix={},
        not_completed=0,
        handoffs=0,
        mean_similarity=similarity,
        latency_p50_ms=None,
        latency_p95_ms=None,
    )


def test_chatq_eval_runs_add_a_section_per_mode() -> None:
    runs = {
        Path("/m/default"): [summary("model", 4, 3, 1, 0.81), summary("router", 15, 8, 7, None)],
        Path("/m/shop-lora"): [summary("model", 10, 6, 4, 0.86)],
    }
    comparison = compare_models(BASE, [TUNED], runs)
    sections = list(dict.fromkeys(r.section for r in comparison.rows))
    assert sections == ["held-out (10 examples)", "chatq eval: model", "chatq eval: router"]
    model_rows = [r for r in comparison.rows if r.section == "chatq eval: model"]
    assert [r.figure for r in model_rows] == [
        "accuracy",
        "accuracy en",
        "accuracy zh",
        "similarity",
    ]
    assert model_rows[0].changes["shop-lora"] == pytest.approx(0.3)
    router_rows = [r for r in comparison.rows if r.section == "chatq eval: router"]
    assert [r.figure for r in router_rows] == ["accuracy", "accuracy en", "accuracy zh"]
    assert router_rows[0].cells["base"].value == 0.75
    assert router_rows[0].cells["shop-lora"].value is None  # the fine-tuned model was not run
    assert "chatq eval: router" in comparison.table()


def test_chatq_eval_runs_of_a_model_not_compared_are_refused() -> None:
    with pytest.raises(ValueError, match="not among the compared models"):
        compare_models(BASE, [TUNED], {Path("/m/other"): [summary("model", 1, 1, 0, None)]})


def test_the_comparison_round_trips_through_json() -> None:
    comparison = compare_models(BASE, [TUNED])
    assert Comparison.model_validate_json(comparison.model_dump_json()) == comparison
