"""``chatq train run``: every step of ``chatq train`` in order, ending with a servable,
registered model version.

    read + clean → split (held-out eval) → augment (train side only) → LoRA fine-tune
    → merge + ONNX export (+ variants) → evaluate base vs fine-tuned on the held-out split
    → register the version (and activate it, when asked)

Each step's output is kept in the work folder (``<data_dir>/train/<name>/`` by default), so a
step can be read, or run again alone with ``chatq train <step>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shared.config import Settings
from shared.logs import get_logger
from training.data.augment import augment_examples
from training.data.clean import CleanOptions, clean_examples
from training.data.examples import write_examples
from training.data.sources import read_source
from training.data.split import split_examples
from training.finetune.options import FinetuneOptions
from training.variants import Quantization

log = get_logger(__name__)

STEPS = ("clean", "split", "augment", "finetune", "export", "evaluate", "register")


@dataclass(frozen=True)
class RunPlan:
    data: Path
    name: str
    base: Path  # a chatq model folder (or a Hugging Face folder) to fine-tune
    work_dir: Path
    model_dir: Path  # where the servable version is built
    clean: CleanOptions = field(default_factory=CleanOptions)
    finetune: FinetuneOptions = field(default_factory=FinetuneOptions)
    eval_share: float = 0.15
    # one paraphrase per row: two would triple the steps of an epoch, past the quarter of an
    # hour a run on the bundled set may take on two CPU cores
    augment_per_example: int = 1
    seed: int = 0
    quantizations: tuple[Quantization, ...] = ()
    max_new_tokens: int = 96
    eval_limit: int | None = None
    activate: bool = False


@dataclass
class RunResult:
    model_dir: Path
    version: str
    table: str
    report_path: Path
    summary: list[str]


def run_training(settings: Settings, plan: RunPlan) -> RunResult:
    """Run every step of ``plan``; a failing step raises (its message says what to do)."""
    from chatq.evaluation.scoring import EmbeddingSimilarity
    from shared.db.migrate import upgrade_database
    from shared.model_versions import (
        ModelVersionError,
        activate_model_version,
        check_version_name,
        list_model_versions,
        register_model_version,
    )
    from training.evaluation.compare import compare_models
    from training.evaluation.held_out import evaluate_model
    from training.finetune.export import export_finetuned
    from training.finetune.train import finetune

    check_version_name(plan.name)  # before the work, not after it
    upgrade_database(settings.database_url)
    versions = list_model_versions(settings.database_url)
    if any(v.name == plan.name for v in versions):
        raise ModelVersionError(
            f"a model version named {plan.name!r} exists already; choose another --name"
        )
    taken = {v.path.resolve(): v.name for v in versions}
    if plan.model_dir.resolve() in taken:
        raise ModelVersionError(
            f"{plan.model_dir} is the folder of model version {taken[plan.model_dir.resolve()]!r}"
            "; workers may be serving it: choose another --out"
        )
    work = plan.work_dir
    work.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=len(STEPS), desc=f"train {plan.name}", unit="step", position=0)
    summary: list[str] = []

    def step(name: str) -> None:
        steps.set_postfix_str(name)
        log.info("train_step", step=name, version=plan.name)

    try:
        step("clean")
        cleaned = clean_examples(read_source(plan.data), options=plan.clean)
        write_examples(work / "clean.jsonl", cleaned.examples)
        (work / "clean.report.json").write_text(cleaned.report.model_dump_json(indent=2))
        summary += ["clean: " + line for line in cleaned.report.summary_lines()]
        steps.update()

        step("split")
        split = split_examples(cleaned.examples, eval_share=plan.eval_share, seed=plan.seed)
        write_examples(work / "eval.jsonl", split.eval)
        summary += ["split: " + line for line in split.report.summary_lines()]
        steps.update()

        step("augment")
        augmented = augment_examples(
            split.train, per_example=plan.augment_per_example, seed=plan.seed
        )
        write_examples(work / "train.jsonl", augmented.examples)
        summary += ["augment: " + line for line in augmented.report.summary_lines()]
        steps.update()

        step("finetune")
        card = finetune(
            plan.base, list(augmented.examples), list(split.eval), work / "adapter",
            plan.finetune,
        )  # fmt: skip
        metrics = card.metrics
        summary.append(
            f"finetune: {metrics.steps} steps in {metrics.wall_time_s / 60:.1f} min, eval loss "
            f"{metrics.eval_loss_before:.3f} → {metrics.eval_loss_best:.3f} (best at step "
            f"{metrics.best_step})"
        )
        steps.update()

        step("export")
        export_finetuned(plan.base, work / "adapter", plan.model_dir, plan.quantizations)
        steps.update()

        step("evaluate")
        examples = list(split.eval)[: plan.eval_limit]
        similarity = EmbeddingSimilarity(settings.embedding_model)
        base_scores, tuned_scores = (
            evaluate_model(
                folder, examples, max_new_tokens=plan.max_new_tokens, similarity=similarity
            )
            for folder in (plan.base, plan.model_dir)
        )
        comparison = compare_models(base_scores, [tuned_scores])
        table = comparison.table()
        report: dict[str, Any] = {
            "version": plan.name,
            "data": str(plan.data),
            "training_card": card.model_dump(mode="json"),
            "comparison": comparison.model_dump(mode="json"),
            "models": [s.model_dump(mode="json") for s in (base_scores, tuned_scores)],
        }
        report_path = work / "report.json"
        report_path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
        steps.update()

        step("register")
        register_model_version(
            settings.database_url,
            plan.name,
            plan.model_dir,
            base=str(plan.base),
            card={
                "training": card.model_dump(mode="json"),
                "held_out": {
                    "examples": len(examples),
                    "base": _figures(base_scores),
                    "finetuned": _figures(tuned_scores),
                },
            },
        )
        if plan.activate:
            activate_model_version(settings.database_url, plan.name)
        steps.update()
    finally:
        steps.close()
    return RunResult(plan.model_dir, plan.name, table, report_path, summary)


def _figures(scores: Any) -> dict[str, Any]:
    return {
        "fact_accuracy": scores.fact_accuracy.rate,
        "similarity": scores.similarity,
        "perplexity": scores.perplexity,
    }
