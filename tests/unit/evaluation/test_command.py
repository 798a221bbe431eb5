"""``chatq eval`` on a running chatq (here the fake API): flags, output, exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from chatq.cli import main
from tests.unit.evaluation.conftest import API_KEY, FakeChatq


@pytest.fixture
def eval_file(tmp_path: Path) -> Path:
    path = tmp_path / "eval.yaml"
    questions = [
        {
            "id": "faq-refund-en-1",
            "kind": "faq",
            "lang": "en",
            "question": "can I send it back?",
            "expect": {"all": [["7[- ]?days?"]], "none": ["30[- ]days"]},
        },
        {
            "id": "faq-refund-zh-1",
            "kind": "faq",
            "lang": "zh",
            "question": "可以退货吗？",
            "expect": {"all": [["7天"]]},
        },
    ]
    path.write_text(yaml.safe_dump({"name": "shop", "questions": questions}, allow_unicode=True))
    return path


@pytest.fixture
def answering(fake_chatq: FakeChatq) -> FakeChatq:
    fake_chatq.answers = {
        "can I send it back?": {"response": "Yes, within 7 days.", "route": "faq"},
        "可以退货吗？": {"response": "可以，30天内。", "route": "llm"},
    }
    return fake_chatq


def run_eval(eval_file: Path, fake: FakeChatq, *extra: str) -> int:
    argv = ["eval", str(eval_file), "--tenant", "shop", "--url", fake.url, "--key", API_KEY]
    return main([*argv, *extra])


def test_a_run_prints_the_table_and_writes_the_json(
    eval_file: Path, answering: FakeChatq, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "result.json"

    status = run_eval(eval_file, answering, "--out", str(out), "--verbose")

    printed = capsys.readouterr().out
    assert status == 0
    assert "shop: 2 questions" in printed
    assert "50.0% (1/2)" in printed
    assert "faq-refund-zh-1 [faq/zh] route=llm" in printed
    assert "missing: 7天" in printed
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["tenant"] == "shop"
    assert record["runs"]["router"]["summary"]["overall"]["correct"] == 1


def test_min_accuracy_fails_the_run_below_the_threshold(
    eval_file: Path, answering: FakeChatq, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "result.json")

    assert run_eval(eval_file, answering, "--out", out, "--min-accuracy", "50%") == 0
    assert run_eval(eval_file, answering, "--out", out, "--min-accuracy", "0.8") == 1
    assert "router accuracy 50.0% is below the minimum 80.0%" in capsys.readouterr().err


def test_a_bad_eval_file_exits_2_with_one_line(
    tmp_path: Path, fake_chatq: FakeChatq, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "eval.yaml"
    bad.write_text(
        "name: shop\nquestions:\n  - {id: q1, kind: faq, lang: en, question: x, "
        "expect: {all: [['(']]}}\n"
    )

    assert run_eval(bad, fake_chatq) == 2

    error = capsys.readouterr().err.strip()
    assert error.startswith("chatq: ") and "question 'q1'" in error and "bad regex" in error
    assert "\n" not in error
    assert fake_chatq.jobs == []


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (["--url", "http://127.0.0.1:9"], "--url needs --key"),
        (["--key", "k"], "--key needs --url"),
        (["--url", "http://127.0.0.1:9", "--key", "k", "--mode", "both"], "needs a private stack"),
        (["--url", "http://127.0.0.1:9", "--key", "k", "--kb", "x"], "--kb loads a private stack"),
        (["--min-accuracy", "1.5"], "between 0 and 1"),
    ],
)
def test_flags_that_do_not_go_together_are_usage_errors(
    eval_file: Path, extra: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["eval", str(eval_file), "--tenant", "shop", *extra])

    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err
