"""``chatq train finetune`` and ``chatq train export``: parsers and handlers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from shared.config import Settings
from training.data.examples import ChatExample
from training.finetune.targets import TargetScope
from training.variants import Quantization

# argument name → FinetuneOptions field; an argument left out keeps the option's default
_OPTION_ARGUMENTS = {
    "epochs": "epochs",
    "max_steps": "max_steps",
    "lr": "learning_rate",
    "rank": "rank",
    "alpha": "alpha",
    "dropout": "dropout",
    "modules": "target_scope",
    "target_modules": "target_modules",
    "top_layers": "top_layers",
    "batch_size": "batch_size",
    "grad_accum": "gradient_accumulation",
    "max_length": "max_length",
    "eval_every": "eval_every",
    "patience": "patience",
    "seed": "seed",
    "threads": "threads",
    "system_prompt": "system_prompt",
}


def add_finetune_parsers(train_subparsers: Any) -> None:
    """Register ``finetune`` and ``export`` under ``chatq train``."""
    finetune = train_subparsers.add_parser(
        "finetune", help="train a LoRA adapter on chat examples (JSON lines)"
    )
    finetune.add_argument("--train", required=True, help="training examples (JSON lines)")
    finetune.add_argument("--eval", required=True, help="held-out examples (chatq train split)")
    finetune.add_argument("--out", required=True, help="folder for the adapter and its card")
    finetune.add_argument("--base", help="model to adapt: a chatq model folder or a Hugging Face "
                          "folder (default CHATQ_MODEL_DIR)")  # fmt: skip
    finetune.add_argument("--epochs", type=int, help="passes over the training examples")
    finetune.add_argument("--max-steps", type=int, help="optimizer steps, overriding --epochs")
    finetune.add_argument("--lr", type=float, help="peak learning rate")
    finetune.add_argument("--rank", type=int, help="LoRA rank")
    finetune.add_argument("--alpha", type=int, help="LoRA alpha (scale = alpha / rank)")
    finetune.add_argument("--dropout", type=float, help="LoRA dropout")
    finetune.add_argument(
        "--modules", choices=[scope.value for scope in TargetScope], help="layers to adapt"
    )
    finetune.add_argument(
        "--target-modules", action="append", help="a layer name to adapt (repeatable)"
    )
    finetune.add_argument(
        "--top-layers", type=_top_layers, help="adapt only the last N blocks, or 'all'"
    )
    finetune.add_argument("--batch-size", type=int, help="examples per forward pass")
    finetune.add_argument("--grad-accum", type=int, help="forward passes per optimizer step")
    finetune.add_argument("--max-length", type=int, help="tokens per example")
    finetune.add_argument("--eval-every", type=int, help="optimizer steps between evaluations")
    finetune.add_argument(
        "--patience", type=int, help="evaluations without improvement before stopping (0: never)"
    )
    finetune.add_argument("--seed", type=int, help="same seed and data, same adapter")
    finetune.add_argument(
        "--threads", type=int, help="PyTorch threads (default CHATQ_INTRA_OP_THREADS, 0: its "
        "choice); 1 can be faster on a machine other processes keep busy"
    )  # fmt: skip
    finetune.add_argument(
        "--system-prompt", help="system prompt put before examples without one "
        "(default CHATQ_SYSTEM_PROMPT, what the worker serves with)"
    )  # fmt: skip
    finetune.add_argument(
        "--verbose", action="store_true", help="also show the libraries' own log lines"
    )
    finetune.set_defaults(handler=cmd_finetune)

    export = train_subparsers.add_parser(
        "export", help="merge an adapter into its base model and build a servable model folder"
    )
    export.add_argument("--adapter", required=True, help="the folder `finetune --out` wrote")
    export.add_argument("--base", help="the model it was trained on (default CHATQ_MODEL_DIR)")
    export.add_argument("--out", required=True, help="the new model folder")
    export.add_argument(
        "--quantize",
        action="append",
        choices=[quantization.value for quantization in Quantization],
        help="also build a quantised variant (int8 or q4 for CPUs, fp16 for CUDA); repeatable",
    )
    export.add_argument("--force", action="store_true", help="rebuild even if up to date")
    export.add_argument(
        "--verbose", action="store_true", help="also show the libraries' own log lines"
    )
    export.set_defaults(handler=cmd_export)


def cmd_finetune(args: argparse.Namespace) -> int:
    from shared.config import get_settings
    from training.data.examples import read_examples
    from training.finetune.options import FinetuneOptions
    from training.finetune.train import finetune

    settings = get_settings()
    train = read_examples(_existing_file(args.train))
    eval = read_examples(_existing_file(args.eval))
    _refuse_leaks(train, eval)
    given = {
        field: getattr(args, argument)
        for argument, field in _OPTION_ARGUMENTS.items()
        if getattr(args, argument) is not None
    }
    given.setdefault("system_prompt", settings.system_prompt)
    given.setdefault("threads", settings.intra_op_threads)
    if given.get("top_layers") == 0:  # --top-layers all
        given["top_layers"] = None
    options = FinetuneOptions.model_validate(given)
    base = Path(args.base) if args.base else settings.model_dir
    out = Path(args.out).resolve()

    _configure_output(settings, args.verbose)
    card = finetune(base, train, eval, out, options)
    metrics = card.metrics
    stopped = ", stopped early" if metrics.stopped_early else ""
    print(
        f"adapter written to {out} ({metrics.steps} steps{stopped}, best at step "
        f"{metrics.best_step}, {metrics.wall_time_s / 60:.1f} min, "
        f"{metrics.seconds_per_step:.1f} s a step)\n"
        f"  eval loss {metrics.eval_loss_before:.3f} -> {metrics.eval_loss_best:.3f}, "
        f"perplexity {metrics.eval_perplexity_before:.2f} -> {metrics.eval_perplexity_after:.2f} "
        f"({card.eval_examples} examples)\n"
        f"  next: chatq train export --adapter {out} --out DIR"
        + (f" --base {args.base}" if args.base else "")
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from shared.config import get_settings
    from training.finetune.export import export_finetuned

    settings = get_settings()
    _configure_output(settings, args.verbose)
    base = Path(args.base) if args.base else settings.model_dir
    out = Path(args.out).resolve()
    quantizations = [Quantization(value) for value in args.quantize or ()]
    manifest = export_finetuned(
        base, Path(args.adapter), out, quantizations=quantizations, force=args.force
    )
    parity = manifest.parity
    print(
        f"model {manifest.name} ready in {out}\n"
        f"  ONNX Runtime fp32 vs PyTorch: {parity.identical_sequences}/{parity.prompts} "
        f"identical greedy answers (graph fused: {manifest.graph_fused})"
    )
    for name, report in manifest.variants.items():
        print(
            f"  {name} vs fp32: {report.identical_sequences}/{report.prompts} identical answers, "
            f"{report.token_agreement:.1%} of tokens agree"
        )
    for name, error in manifest.variant_errors.items():
        print(f"  {name}: {error}")
    print(f"  serve it: CHATQ_MODEL_DIR={out} chatq up")
    return 0


def _top_layers(value: str) -> int:
    """A block count, or ``all`` (0 here, None in the options)."""
    if value == "all":
        return 0
    count = int(value)
    if count < 1:
        raise argparse.ArgumentTypeError("give a positive number of blocks, or 'all'")
    return count


def _existing_file(name: str) -> Path:
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give a JSON-lines file of examples")
    return path


def _refuse_leaks(train: list[ChatExample], eval: list[ChatExample]) -> None:
    """Rows ``chatq train split`` held out must not be trained on, nor trained rows scored."""
    if any(example.split == "eval" for example in train):
        raise ValueError("the training file holds rows split off for eval; give the train file")
    if any(example.split == "train" or example.augmented for example in eval):
        raise ValueError("the eval file holds training or augmented rows; give the eval file")


def _configure_output(settings: Settings, verbose: bool) -> None:
    """The progress bar and the summary, not the libraries' narration."""
    import logging

    from shared.logs import configure_logging

    configure_logging(settings.model_copy(update={"log_format": "console"}), "train")
    if verbose:
        return
    from optimum.utils import logging as optimum_logging
    from transformers.utils import logging as transformers_logging

    logging.getLogger().setLevel(logging.WARNING)
    for ours in ("training", "shared", "chatq"):
        logging.getLogger(ours).setLevel(logging.INFO)
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    transformers_logging.set_verbosity_error()
    optimum_logging.set_verbosity_error()
