"""The training card: what an adapter was trained on, how, and how it came out. Written beside
the adapter as ``training-card.json`` and copied into the model folder an export makes, so a
served model can always be traced to its base weights, its data and its settings."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from training.data.examples import ChatExample
from training.finetune.options import FinetuneOptions

CARD_NAME = "training-card.json"


class LossPoint(BaseModel):
    step: int
    loss: float


class TrainingMetrics(BaseModel):
    steps: int  # optimizer steps run
    best_step: int  # the step whose adapter was kept (0: none beat the base model)
    stopped_early: bool
    epochs: float  # passes over the training examples, a fraction for a partial last one
    train_tokens: int  # answer tokens the loss was computed on, over all steps
    train_loss_first: float  # the first step's
    train_loss_last: float  # the last step's
    train_loss_curve: list[LossPoint]  # the mean of each evaluation interval
    eval_loss_before: float  # the base model's, per answer token
    eval_loss_best: float  # the kept adapter's
    eval_perplexity_before: float
    eval_perplexity_after: float
    eval_curve: list[LossPoint]  # every evaluation, step 0 included
    wall_time_s: float
    seconds_per_step: float


class TrainingCard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_model: str  # the Hugging Face folder trained on
    base_model_name: str
    base_fingerprint: str  # sha256 of its config and weight files
    data_sha256: str  # of the canonical JSON of the train and eval examples
    train_examples: int  # as given, skipped ones included
    eval_examples: int
    train_languages: dict[str, int]
    eval_languages: dict[str, int]
    truncated_examples: (
        int  # train + eval, kept with their oldest prompt tokens cut to fit max_length
    )
    skipped_examples: int  # train + eval, left out: the answer alone is longer than max_length
    options: FinetuneOptions
    target_modules: list[str]
    adapted_blocks: list[int] | None  # transformer blocks with adapters (None: all)
    trainable_parameters: int
    metrics: TrainingMetrics
    versions: dict[str, str]
    created_at: datetime

    def write(self, folder: Path) -> Path:
        path = folder / CARD_NAME
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, folder: Path) -> TrainingCard | None:
        path = folder / CARD_NAME
        return cls.model_validate_json(path.read_text(encoding="utf-8")) if path.is_file() else None


def data_sha256(train: Sequence[ChatExample], eval: Sequence[ChatExample]) -> str:
    """The same examples in the same order give the same hash, whatever file they came from."""
    canonical = json.dumps(
        {
            "train": [example.model_dump(mode="json") for example in train],
            "eval": [example.model_dump(mode="json") for example in eval],
        },
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def language_counts(examples: Sequence[ChatExample]) -> dict[str, int]:
    return dict(sorted(Counter(example.lang for example in examples).items()))


def library_versions() -> dict[str, str]:
    return {name: version(name) for name in ("torch", "transformers", "peft")}
