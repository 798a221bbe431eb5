"""``chatq train clean|split|augment`` as the CLI runs them: files in, files and a summary out,
clear errors for bad input."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from training.data.commands import add_data_parsers
from training.data.examples import read_examples


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="chatq train")
    add_data_parsers(parser.add_subparsers(dest="train_command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


EN_TOPICS = (
    "shipping", "refunds", "warranty", "pairing", "gift cards", "points", "invoices",
    "price protection", "smart plugs", "cancelling", "Macau", "descaling", "instalments",
    "damaged parcels", "Gold membership", "missed deliveries", "returns", "routers",
    "headphones", "kettles",
)  # fmt: skip
ZH_TOPICS = (
    "运费", "退货", "保修", "配对", "礼品卡", "积分", "发票", "价保", "插座", "取消订单",
    "澳门", "除垢", "分期", "破损", "金卡", "签收", "退款", "路由器", "耳机", "水壶",
)  # fmt: skip


@pytest.fixture
def seed_file(tmp_path: Path) -> Path:
    rows = [
        {"input": f"User: What should I know about {topic}?", "output": f"Agent: All on {topic}."}
        for topic in EN_TOPICS
    ]
    rows += [
        {"input": f"用户：关于{topic}，我需要了解什么？", "output": f"客服：{topic}的说明。"}
        for topic in ZH_TOPICS
    ]
    rows.append(
        {"input": "User: What should I know about points?", "output": "Agent: All on points."}
    )
    lines = [json.dumps(row, ensure_ascii=False) for row in rows] + ["{not json"]
    path = tmp_path / "seed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_clean_then_split_then_augment(
    tmp_path: Path, seed_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cleaned = tmp_path / "out" / "clean.jsonl"
    assert run(["clean", str(seed_file), str(cleaned)]) == 0
    printed = capsys.readouterr().out
    assert "40 of 42 rows kept" in printed
    assert "dropped, malformed: 1" in printed and "dropped, exact_duplicate: 1" in printed
    report = json.loads((tmp_path / "out" / "clean.report.json").read_text(encoding="utf-8"))
    assert report["source"] == str(seed_file)
    assert report["dropped"]["malformed"] == 1
    assert len(read_examples(cleaned)) == 40

    train, held_out = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    assert run(["split", str(cleaned), "--train", str(train), "--eval", str(held_out)]) == 0
    train_rows, eval_rows = read_examples(train), read_examples(held_out)
    assert len(train_rows) + len(eval_rows) == 40
    assert {row.lang for row in eval_rows} == {"en", "zh"}
    assert "eval: 6 rows (en 3, zh 3)" in capsys.readouterr().out

    augmented = tmp_path / "train.augmented.jsonl"
    argv = ["augment", str(train), str(augmented), "--per-example", "2", "--seed", "3"]
    assert run(argv) == 0
    rows = read_examples(augmented)
    assert len(rows) == 3 * len(train_rows)
    assert "back-translation: skipped: no translation model folder given" in (
        capsys.readouterr().out
    )

    with pytest.raises(ValueError, match="marked eval"):
        run(["augment", str(held_out), str(tmp_path / "leak.jsonl")])
    assert not (tmp_path / "leak.jsonl").exists()


def test_clean_writes_the_report_where_asked_and_limits_are_checked(
    tmp_path: Path, seed_file: Path
) -> None:
    report = tmp_path / "reports" / "seed.json"
    argv = ["clean", str(seed_file), str(tmp_path / "c.jsonl"), "--report", str(report)]
    assert run([*argv, "--min-question-chars", "30"]) == 0
    assert json.loads(report.read_text(encoding="utf-8"))["options"]["min_question_chars"] == 30
    with pytest.raises(ValueError, match="--near-duplicate-threshold"):
        run([*argv, "--near-duplicate-threshold", "2"])


def test_clean_fails_when_nothing_is_left(tmp_path: Path) -> None:
    source = tmp_path / "short.jsonl"
    source.write_text('{"input": "hi", "output": "hello"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="no row is left after cleaning"):
        run(["clean", str(source), str(tmp_path / "c.jsonl")])


def test_missing_or_unreadable_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        run(["clean", str(tmp_path / "missing.csv"), str(tmp_path / "c.jsonl")])
    with pytest.raises(FileNotFoundError, match="no such file"):
        run(["split", str(tmp_path / "missing.jsonl"), "--train", "t", "--eval", "e"])
    seed_shaped = tmp_path / "seed.jsonl"
    seed_shaped.write_text('{"input": "Shipping?", "output": "Free."}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="not a training example"):
        run(["augment", str(seed_shaped), str(tmp_path / "a.jsonl")])
