"""``chatq train evaluate``: its options, its refusals, and one whole run on the tiny model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from shared.model_layout import ModelNotBuiltError
from training.data.examples import ChatExample, write_examples
from training.evaluation.commands import add_evaluate_parser

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
                {"role": "user", "content": "退款政策是什么？"},
                {"role": "assistant", "content": "7天内可以退货。"},
            ],
            "lang": "zh",
            "facts": ["7天"],
        }
    ),
]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chatq train")
    add_evaluate_parser(parser.add_subparsers(dest="train_command", required=True))
    return parser.parse_args(["evaluate", *argv])


@pytest.fixture
def eval_file(tmp_path: Path) -> Path:
    path = tmp_path / "held_out.jsonl"
    write_examples(path, EXAMPLES)
    return path


def test_options_and_defaults() -> None:
    args = parse("--eval", "e.jsonl", "--model", "a", "--model", "b")
    assert args.model == ["a", "b"]
    assert (args.base, args.json, args.limit, args.max_new_tokens) == (None, None, None, 96)


def test_the_model_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--eval", "e.jsonl")
    assert "--model" in capsys.readouterr().err


def test_a_missing_eval_file_is_named(tmp_path: Path) -> None:
    args = parse("--eval", str(tmp_path / "nope.jsonl"), "--model", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        args.handler(args)


def test_every_model_must_be_built_before_any_runs(
    eval_file: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    args = parse(
        "--eval", str(eval_file), "--base", str(tiny_model_dir), "--model", str(tmp_path / "x")
    )
    with pytest.raises(ModelNotBuiltError, match="chatq model build"):
        args.handler(args)


def test_a_limit_below_one_is_refused(eval_file: Path, tiny_model_dir: Path) -> None:
    args = parse("--eval", str(eval_file), "--model", str(tiny_model_dir), "--limit", "0")
    with pytest.raises(ValueError, match="--limit must be at least 1"):
        args.handler(args)


def test_a_whole_run_prints_the_table_and_writes_the_record(
    eval_file: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report" / "evaluate.json"
    args = parse(
        "--eval", str(eval_file),
        "--base", str(tiny_model_dir),
        "--model", str(tiny_model_dir),
        "--json", str(out),
        "--max-new-tokens", "4",
        "--limit", "1",
    )  # fmt: skip
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert "held_out.jsonl: 1 held-out example\n" in printed
    assert "exact facts" in printed and "perplexity" in printed

    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["examples"] == 1
    assert list(record["comparison"]["columns"]) == ["base", "tiny"]
    assert [m["examples"] for m in record["models"]] == [1, 1]
    # the same model twice: the same answers, so no change anywhere
    base, tuned = record["models"]
    assert base["records"][0]["answer"] == tuned["records"][0]["answer"]
    facts = record["comparison"]["rows"][0]
    assert facts["figure"] == "exact facts"
    assert facts["changes"]["tiny"] == 0.0
