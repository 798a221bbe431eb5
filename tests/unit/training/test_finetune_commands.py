"""``chatq train finetune``'s arguments: options left out keep their defaults, ``--top-layers all``
adapts every block, and files that would leak eval rows into training are refused before any
model is loaded."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from training.data.examples import ChatExample, write_examples
from training.finetune.commands import add_finetune_parsers


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser()
    add_finetune_parsers(root.add_subparsers(dest="action", required=True))
    return root


def example(split: str | None = None, origin: str = "seed") -> ChatExample:
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    return ChatExample.model_validate(
        {"messages": messages, "lang": "en", "split": split, "origin": origin}
    )


def run(tmp_path: Path, train: list[ChatExample], eval: list[ChatExample], *extra: str) -> int:
    write_examples(tmp_path / "train.jsonl", train)
    write_examples(tmp_path / "eval.jsonl", eval)
    args = parser().parse_args(
        ["finetune", "--train", str(tmp_path / "train.jsonl"), "--eval",
         str(tmp_path / "eval.jsonl"), "--out", str(tmp_path / "adapter"),
         "--base", str(tmp_path / "no-model"), *extra]
    )  # fmt: skip
    return int(args.handler(args))


def test_top_layers_takes_a_count_or_all() -> None:
    common = ["finetune", "--train", "t", "--eval", "e", "--out", "o"]
    assert parser().parse_args([*common, "--top-layers", "all"]).top_layers == 0
    assert parser().parse_args([*common, "--top-layers", "3"]).top_layers == 3
    assert parser().parse_args(common).top_layers is None  # the option's default applies
    with pytest.raises(SystemExit):
        parser().parse_args([*common, "--top-layers", "0"])


def test_rows_held_out_for_eval_are_never_trained_on(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split off for eval"):
        run(tmp_path, [example("train"), example("eval")], [example("eval")])
    with pytest.raises(ValueError, match="training or augmented rows"):
        run(tmp_path, [example("train")], [example(origin="augment:rewrite")])
    assert not (tmp_path / "adapter").exists()


def test_bad_options_and_missing_files_are_refused_before_loading_a_model(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValidationError, match="rank"):
        run(tmp_path, [example()], [example()], "--rank", "0")
    args = parser().parse_args(
        ["finetune", "--train", str(tmp_path / "absent.jsonl"), "--eval", "e", "--out", "o"]
    )
    with pytest.raises(FileNotFoundError, match=r"absent\.jsonl does not exist"):
        args.handler(args)
