"""The moderation eval: a small fixture file, bad files, and the shipped set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from chatq.moderation_eval import EvalSetError, evaluate, format_report, load_eval_set
from shared.moderation import CATEGORIES

SHIPPED = Path(__file__).resolve().parents[3] / "examples" / "moderation" / "labelled.yaml"
# Measured on the shipped set when it was written (precision 0.976, recall 0.916 over all
# (item, category) pairs; 0.990 / 0.923 per item); the floors leave a small margin for list edits.
MIN_PRECISION = 0.95
MIN_RECALL = 0.89


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_a_small_file_is_scored_per_language_and_category(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "name": "tiny",
            "lists": [{"name": "rivals", "category": "custom", "terms": ["MegaMart"]}],
            "items": [
                {"text": "you idiot", "lang": "en", "labels": ["abuse"]},
                {"text": "MegaMart is cheaper", "lang": "en", "labels": ["custom"]},
                {"text": "please assess the class", "lang": "en", "labels": []},
                {"text": "the parcel is late", "lang": "en", "labels": ["abuse"]},  # a miss
                {"text": "傻逼客服", "lang": "zh", "labels": ["abuse"]},
                {"text": "操作系统", "lang": "zh", "labels": ["profanity"]},  # mislabelled
            ],
        },
    )
    report = evaluate(path)
    assert report.items == 6
    assert report.items_by_language == {"en": 4, "zh": 2}
    en_abuse = report.score("en", "abuse")
    assert (en_abuse.true_positives, en_abuse.false_positives, en_abuse.false_negatives) == (
        1,
        0,
        1,
    )
    assert report.score("en", "custom").precision == 1.0
    assert report.score("zh", "profanity").recall == 0.0
    assert report.score("all", "all").precision == 1.0
    assert report.score("all", "all").recall == pytest.approx(3 / 5)
    assert [miss.number for miss in report.misses] == [4, 6]

    table = format_report(report)
    assert "en    abuse" in table and "#4 [en]" in table
    data = json.loads(json.dumps(report.to_json(), ensure_ascii=False))
    assert data["scores"]["zh"]["abuse"] == {
        "precision": 1.0,
        "recall": 1.0,
        "tp": 1,
        "fp": 0,
        "fn": 0,
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"items": []}, "'items' must be a non-empty list"),
        ([1, 2], "expected a mapping"),
        ({"items": [{"text": "x", "lang": "en", "labels": []}], "extra": 1}, "unknown keys"),
        ({"items": [{"text": "ok", "lang": "en", "labels": []}, "nope"]}, "item 2: expected"),
        ({"items": [{"text": "ok", "lang": "fr", "labels": []}]}, "item 1: lang"),
        ({"items": [{"text": "ok", "lang": "en", "labels": ["rude"]}]}, "unknown label 'rude'"),
        ({"items": [{"text": "", "lang": "en", "labels": []}]}, "item 1: text"),
        ({"items": [{"lang": "en", "labels": []}]}, "item 1: text"),
        (
            {
                "lists": [{"name": "x", "category": "brands", "terms": ["a"]}],
                "items": [{"text": "ok", "lang": "en", "labels": []}],
            },
            "list 1: list x: unknown category",
        ),
    ],
)
def test_a_bad_file_names_the_file_the_item_and_the_problem(
    tmp_path: Path, data: object, message: str
) -> None:
    path = write(tmp_path, data)
    with pytest.raises(EvalSetError, match=message) as caught:
        load_eval_set(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_unreadable_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(EvalSetError, match="cannot read"):
        load_eval_set(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("items: [\n", encoding="utf-8")
    with pytest.raises(EvalSetError, match="not valid YAML"):
        load_eval_set(broken)


def test_the_shipped_set_covers_both_languages_and_every_category() -> None:
    eval_set = load_eval_set(SHIPPED)
    assert len(eval_set.items) >= 300
    languages = [item.lang for item in eval_set.items]
    assert 0.4 <= languages.count("zh") / len(languages) <= 0.6
    for lang in ("en", "zh"):
        labels = {label for item in eval_set.items if item.lang == lang for label in item.labels}
        assert labels == set(CATEGORIES), lang
        clean = [item for item in eval_set.items if item.lang == lang and not item.labels]
        assert len(clean) >= 50, f"{lang}: too few hard negatives"


def test_the_shipped_set_keeps_its_precision_and_recall() -> None:
    report = evaluate(SHIPPED)
    overall = report.score("all", "all")
    assert overall.precision is not None and overall.precision >= MIN_PRECISION
    assert overall.recall is not None and overall.recall >= MIN_RECALL
    for lang in ("en", "zh"):
        score = report.score(lang, "all")
        assert score.precision is not None and score.precision >= MIN_PRECISION - 0.02, lang
        assert score.recall is not None and score.recall >= MIN_RECALL - 0.02, lang
