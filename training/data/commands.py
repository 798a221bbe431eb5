"""The data steps of ``chatq train``, in the order they run:

    chatq train clean IN OUT [--report FILE] [--min-question-chars N] [--min-answer-chars N]
                             [--max-turn-chars N] [--near-duplicate-threshold X] [--keep VALUE]
    chatq train split IN --train OUT --eval OUT [--eval-share X] [--seed N]
    chatq train augment IN OUT [--seed N] [--per-example N] [--translation-model-dir DIR]

``clean`` reads the accepted input formats (``sources``); ``split`` and ``augment`` read and
write training examples (``examples.read_examples``). ``augment`` takes the train file of
``split``, never the eval file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from training.data.augment import DEFAULT_PER_EXAMPLE, augment_examples
from training.data.clean import CleanOptions, clean_examples, default_report_path
from training.data.examples import ChatExample, read_examples, write_examples
from training.data.sources import read_source
from training.data.split import DEFAULT_EVAL_SHARE, DEFAULT_GROUP_THRESHOLD, split_examples

_DEFAULTS = CleanOptions()


def add_data_parsers(train_subparsers: Any) -> None:
    """Register ``clean``, ``split`` and ``augment`` on ``chatq train``'s subparsers."""
    clean = train_subparsers.add_parser(
        "clean", help="drop malformed, short, long, flagged and duplicate rows; anonymise"
    )
    clean.add_argument(
        "source", metavar="IN", help="JSON lines (seed or chat shape) or CSV (question,answer)"
    )
    clean.add_argument("out", metavar="OUT", help="cleaned examples (JSON lines)")
    clean.add_argument(
        "--report", metavar="FILE", help="the report (default: OUT's name + .report.json)"
    )
    clean.add_argument(
        "--min-question-chars",
        type=int,
        default=_DEFAULTS.min_question_chars,
        metavar="N",
        help="shortest question, a Chinese character counting 3 (default %(default)s)",
    )
    clean.add_argument(
        "--min-answer-chars",
        type=int,
        default=_DEFAULTS.min_answer_chars,
        metavar="N",
        help="shortest answer, a Chinese character counting 3 (default %(default)s)",
    )
    clean.add_argument(
        "--max-turn-chars",
        type=int,
        default=_DEFAULTS.max_turn_chars,
        metavar="N",
        help="longest turn, a Chinese character counting 3 (default %(default)s)",
    )
    clean.add_argument(
        "--near-duplicate-threshold",
        type=float,
        default=_DEFAULTS.near_duplicate_threshold,
        metavar="X",
        help="Jaccard similarity of question and answer from which a row repeats another "
        "(default %(default)s)",
    )
    clean.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="VALUE",
        help="a public e-mail address or phone number not to anonymise (repeatable)",
    )
    clean.set_defaults(handler=cmd_clean)

    split = train_subparsers.add_parser(
        "split", help="a held-out eval set: same seed, same split; no question on both sides"
    )
    split.add_argument("source", metavar="IN", help="cleaned examples (JSON lines)")
    split.add_argument("--train", required=True, metavar="OUT", help="the train file")
    split.add_argument("--eval", required=True, metavar="OUT", help="the eval file")
    split.add_argument(
        "--eval-share",
        type=float,
        default=DEFAULT_EVAL_SHARE,
        metavar="X",
        help="share of each language held out (default %(default)s)",
    )
    split.add_argument("--seed", type=int, default=0, help="default %(default)s")
    split.add_argument(
        "--group-threshold",
        type=float,
        default=DEFAULT_GROUP_THRESHOLD,
        metavar="X",
        help="question similarity that keeps rows on one side (default %(default)s)",
    )
    split.set_defaults(handler=cmd_split)

    augment = train_subparsers.add_parser(
        "augment", help="reword the questions of the train file (synonyms, templates)"
    )
    augment.add_argument("source", metavar="IN", help="the train file of `chatq train split`")
    augment.add_argument("out", metavar="OUT", help="the train rows plus the new ones")
    augment.add_argument("--seed", type=int, default=0, help="default %(default)s")
    augment.add_argument(
        "--per-example",
        type=int,
        default=DEFAULT_PER_EXAMPLE,
        metavar="N",
        help="new rows per row at most (default %(default)s)",
    )
    augment.add_argument(
        "--translation-model-dir",
        metavar="DIR",
        help="en-zh/ and zh-en/ seq2seq models for back-translation (default: skipped)",
    )
    augment.set_defaults(handler=cmd_augment)


def cmd_clean(args: argparse.Namespace) -> int:
    source, out = Path(args.source), Path(args.out)
    try:
        options = CleanOptions(
            min_question_chars=args.min_question_chars,
            min_answer_chars=args.min_answer_chars,
            max_turn_chars=args.max_turn_chars,
            near_duplicate_threshold=args.near_duplicate_threshold,
            keep_values=tuple(args.keep),
        )
    except ValidationError as error:
        problems = "; ".join(
            f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in error.errors()
        )
        raise ValueError(f"invalid limits: {problems}") from None
    result = clean_examples(read_source(source), options=options, progress=True)
    report = result.report.model_copy(update={"source": str(source)})
    write_examples(out, result.examples)
    report_path = Path(args.report) if args.report else default_report_path(out)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    for line in report.summary_lines():
        print(line)
    print(f"wrote {out} and {report_path}")
    if not result.examples:
        raise ValueError(f"{source}: no row is left after cleaning; see {report_path}")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    examples = _read(Path(args.source))
    result = split_examples(
        examples,
        eval_share=args.eval_share,
        seed=args.seed,
        group_threshold=args.group_threshold,
        progress=True,
    )
    write_examples(Path(args.train), result.train)
    write_examples(Path(args.eval), result.eval)
    for line in result.report.summary_lines():
        print(line)
    print(f"wrote {args.train} and {args.eval}")
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    examples = _read(Path(args.source))
    model_dir = Path(args.translation_model_dir) if args.translation_model_dir else None
    result = augment_examples(
        examples,
        per_example=args.per_example,
        seed=args.seed,
        translation=model_dir,
        progress=True,
    )
    write_examples(Path(args.out), result.examples)
    for line in result.report.summary_lines():
        print(line)
    print(f"wrote {args.out}")
    return 0


def _read(path: Path) -> list[ChatExample]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    examples = read_examples(path)
    if not examples:
        raise ValueError(f"{path}: no examples in it")
    return examples
