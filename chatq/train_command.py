"""``chatq train``: make the model the business's own.

chatq train run --name NAME [--data FILE]   every step below, ending with a registered version
chatq train clean | split | augment         the data steps (training/data/commands.py)
chatq train finetune | export               LoRA and the servable model (training/finetune/)
chatq train evaluate                        base vs fine-tuned, held out (training/evaluation/)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_train_run(args: argparse.Namespace) -> int:
    from shared.config import get_settings
    from shared.logs import configure_logging
    from training.data.clean import CleanOptions
    from training.datasets import SHOP_INSTRUCTIONS
    from training.finetune.options import FinetuneOptions
    from training.pipeline import RunPlan, run_training
    from training.variants import Quantization

    settings = get_settings()
    configure_logging(settings.model_copy(update={"log_format": "console"}), "train")
    _quiet_libraries(args.verbose)
    data = Path(args.data) if args.data else SHOP_INSTRUCTIONS
    if not data.is_file():
        raise FileNotFoundError(f"{data}: no such file (--data takes JSON lines or CSV)")
    options: dict[str, Any] = {
        "seed": args.seed,
        "system_prompt": settings.system_prompt,
        "threads": settings.intra_op_threads,
    }
    for option in ("epochs", "max_steps", "learning_rate", "rank"):
        if getattr(args, option) is not None:
            options[option] = getattr(args, option)
    plan = RunPlan(
        data=data,
        name=args.name,
        base=Path(args.base) if args.base else settings.model_dir,
        work_dir=Path(args.work) if args.work else settings.data_dir / "train" / args.name,
        model_dir=Path(args.out) if args.out else settings.data_dir / "models" / args.name,
        clean=CleanOptions(keep_values=tuple(args.keep or ())),
        finetune=FinetuneOptions.model_validate(options),
        seed=args.seed,
        augment_per_example=args.augment_per_example,
        quantizations=tuple(Quantization(value) for value in args.quantize or ()),
        max_new_tokens=args.max_new_tokens,
        eval_limit=args.eval_limit,
        activate=args.activate,
    )
    result = run_training(settings, plan)
    print("\n".join(result.summary))
    print(f"\nheld-out split: base vs {result.version}\n")
    print(result.table)
    action = "registered and activated" if plan.activate else "registered"
    print(
        f"\nmodel version {result.version} {action}: {result.model_dir}\n"
        f"  report: {result.report_path}"
        + ("" if plan.activate else f"\n  serve it: chatq models activate {result.version}")
    )
    return 0


def _quiet_libraries(verbose: bool) -> None:
    """The progress bars and the summary, not the libraries' narration."""
    if verbose:
        return
    import logging

    for name in ("transformers", "optimum", "onnxruntime", "peft", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)


def add_train_parser(commands: Any) -> None:
    """``chatq train`` parses its own arguments when it runs: its steps import the ML stack
    (seconds), which no other command should wait for."""
    lazy = commands.add_parser(
        "train", help="fine-tune the model on the business's own dialogues", add_help=False
    )
    lazy.add_argument("train_arguments", nargs=argparse.REMAINDER)
    lazy.set_defaults(handler=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    parsed = build_train_parser().parse_args(args.train_arguments)
    return int(parsed.handler(parsed))


def build_train_parser() -> argparse.ArgumentParser:
    from training.data.commands import add_data_parsers
    from training.evaluation.commands import add_evaluate_parser
    from training.finetune.commands import add_finetune_parsers
    from training.variants import Quantization

    parser = argparse.ArgumentParser(
        prog="chatq train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train = parser.add_subparsers(dest="train_command", required=True, metavar="STEP")
    run = train.add_parser(
        "run", help="clean, split, augment, fine-tune, export, evaluate and register"
    )
    run.add_argument("--name", required=True, help="the model version to make (chatq models)")
    run.add_argument(
        "--data", metavar="FILE", help="JSON lines or CSV (default: the bundled shop set)"
    )
    run.add_argument("--base", metavar="DIR", help="model to fine-tune (default CHATQ_MODEL_DIR)")
    run.add_argument("--out", metavar="DIR", help="the version's folder (default data_dir/models)")
    run.add_argument("--work", metavar="DIR", help="each step's output (default data_dir/train)")
    run.add_argument("--keep", action="append", metavar="VALUE", help="public contact to keep")
    run.add_argument("--epochs", type=int)
    run.add_argument("--max-steps", type=int)
    run.add_argument("--learning-rate", type=float)
    run.add_argument("--rank", type=int)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--augment-per-example", type=int, default=1, metavar="N", help="paraphrases per row"
    )
    run.add_argument("--quantize", action="append", choices=[q.value for q in Quantization])
    run.add_argument("--max-new-tokens", type=int, default=96, help="answers scored held out")
    run.add_argument("--eval-limit", type=int, help="score only the first N held-out examples")
    run.add_argument("--activate", action="store_true", help="serve the new version at once")
    run.add_argument("--verbose", action="store_true", help="the libraries' own lines too")
    run.set_defaults(handler=cmd_train_run)
    add_data_parsers(train)
    add_finetune_parsers(train)
    add_evaluate_parser(train)
    return parser
