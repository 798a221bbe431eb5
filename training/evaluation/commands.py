"""``chatq train evaluate``: the base model and fine-tuned ones on the held-out split, one table.

    chatq train evaluate --eval held_out.jsonl --model .chatq/models/shop-lora \\
        [--base .chatq/models/default] [--json report.json] [--limit 50]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_MAX_NEW_TOKENS = 96


def add_evaluate_parser(train_subparsers: Any) -> argparse.ArgumentParser:
    """Register ``evaluate`` under ``chatq train``."""
    evaluate = train_subparsers.add_parser(
        "evaluate",
        help="compare the base model with fine-tuned ones on held-out examples",
        description="Answer the held-out examples with each model as the worker would (greedy), "
        "and compare exact-fact accuracy, similarity to the reference answers and the "
        "reference answers' perplexity.",
    )
    evaluate.add_argument(
        "--eval", required=True, metavar="FILE", help="held-out examples (JSON lines)"
    )
    evaluate.add_argument(
        "--base", metavar="DIR", help="the base model folder (default: CHATQ_MODEL_DIR)"
    )
    evaluate.add_argument(
        "--model",
        required=True,
        action="append",
        metavar="DIR",
        help="a fine-tuned model folder (built like the base); repeat to compare several",
    )
    evaluate.add_argument("--json", metavar="OUT", help="write the figures and every answer here")
    evaluate.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        metavar="N",
        help=f"longest answer, in tokens (default {DEFAULT_MAX_NEW_TOKENS})",
    )
    evaluate.add_argument(
        "--limit", type=int, metavar="N", help="evaluate the first N examples only"
    )
    evaluate.set_defaults(handler=cmd_evaluate)
    return evaluate


def _positive(value: int | None, option: str) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{option} must be at least 1 (got {value})")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from chatq.evaluation.scoring import EmbeddingSimilarity
    from shared.config import get_settings
    from shared.model_layout import ModelLayout
    from training.data.examples import read_examples
    from training.evaluation.compare import compare_models
    from training.evaluation.held_out import evaluate_model

    _positive(args.max_new_tokens, "--max-new-tokens")
    _positive(args.limit, "--limit")
    eval_file = Path(args.eval)
    if not eval_file.is_file():
        raise FileNotFoundError(f"{eval_file}: no such file (--eval takes a JSON-lines file)")
    settings = get_settings()
    base = Path(args.base) if args.base else settings.model_dir
    models = [Path(folder) for folder in args.model]
    for folder in [base, *models]:
        ModelLayout(folder).require_manifest()  # every model built, before any is run
    examples = read_examples(eval_file)[: args.limit]
    if not examples:
        raise ValueError(f"{eval_file} holds no examples")

    similarity = EmbeddingSimilarity(settings.embedding_model)  # loaded once for every model
    scores = [
        evaluate_model(folder, examples, max_new_tokens=args.max_new_tokens, similarity=similarity)
        for folder in [base, *models]
    ]
    comparison = compare_models(scores[0], scores[1:])
    noun = "example" if len(examples) == 1 else "examples"
    print(f"\n{eval_file.name}: {len(examples)} held-out {noun}\n")
    print(comparison.table())
    if args.json:
        record: dict[str, Any] = {
            "eval": str(eval_file),
            "examples": len(examples),
            "comparison": comparison.model_dump(mode="json"),
            "models": [s.model_dump(mode="json") for s in scores],
        }
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {out}", file=sys.stderr)
    return 0
