"""LoRA fine-tuning of a causal LM on chat examples: a plain PyTorch loop (quiet, seeded, and
cheap on a CPU), with the loss on the answer tokens only, evaluation every few steps, early
stopping, and the best adapter kept.

The loss of a step is the mean over every answer token of its micro-batches (each micro-batch's
summed loss is divided by the step's token count), so gradient accumulation trains exactly as one
large batch would. Evaluation losses are per answer token over the whole eval split.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shared.logs import get_logger
from training.data.examples import ChatExample
from training.finetune.base_model import BaseModelFolder, load_base_model, locate_base_model
from training.finetune.batches import (
    StepPlan,
    label_count,
    pad_batch,
    plan_steps,
    steps_per_epoch,
)
from training.finetune.card import (
    CARD_NAME,
    LossPoint,
    TrainingCard,
    TrainingMetrics,
    data_sha256,
    language_counts,
    library_versions,
)
from training.finetune.early_stopping import EarlyStopping
from training.finetune.options import FinetuneOptions
from training.finetune.targets import LoraTargets, lora_targets, top_blocks
from training.finetune.tokenize import ExampleTokenizer, TokenizedExample, TokenizedSet

log = get_logger(__name__)

AdapterState = dict[str, Any]  # trainable parameter name → a copy of its tensor


def finetune(
    model_dir: Path,
    train: list[ChatExample],
    eval: list[ChatExample],
    out_dir: Path,
    options: FinetuneOptions | None = None,
    *,
    progress: bool = True,
) -> TrainingCard:
    """Train a LoRA adapter on ``train``, keep the one with the lowest loss on ``eval``, and save
    it with its training card to ``out_dir`` (replaced whole at the end, never half-written).

    ``model_dir``: a chatq model folder (its ``pytorch/`` is trained on) or a Hugging Face folder.
    """
    import torch

    options = options or FinetuneOptions()
    if not train:
        raise ValueError("no training examples: give a file with at least one")
    if not eval:
        raise ValueError("no eval examples: early stopping and the training card need some")
    _check_output_folder(out_dir)
    base = locate_base_model(model_dir)
    previous_threads = torch.get_num_threads()
    if options.threads:
        torch.set_num_threads(options.threads)
    try:
        return _finetune(base, train, eval, out_dir, options, progress)
    finally:
        torch.set_num_threads(previous_threads)  # the caller's process, as it was


def _finetune(
    base: BaseModelFolder,
    train: list[ChatExample],
    eval: list[ChatExample],
    out_dir: Path,
    options: FinetuneOptions,
    progress: bool,
) -> TrainingCard:
    import torch

    started = time.monotonic()
    torch.manual_seed(options.seed)
    model, tokenizer = load_base_model(base)
    train_set, eval_set = _tokenize(model, tokenizer, train, eval, options)
    targets = lora_targets(model, options.target_scope, options.target_modules)
    blocks = top_blocks(model, options.top_layers)
    model = _with_adapter(model, targets, blocks, options)
    log.info(
        "finetune_started",
        base=str(base.folder),
        train=len(train_set.examples),
        eval=len(eval_set.examples),
        targets=list(targets.modules),
    )
    metrics = _train(model, train_set, eval_set, _pad_id(tokenizer), options, progress)
    metrics = metrics.model_copy(update={"wall_time_s": round(time.monotonic() - started, 2)})
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model.save_pretrained(staging)
        card = _card(
            base, (train, eval), (train_set, eval_set), targets, blocks, model, options, metrics
        )
        card.write(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap_into_place(staging, out_dir)
    log.info(
        "finetune_finished",
        out_dir=str(out_dir),
        steps=metrics.steps,
        best_step=metrics.best_step,
        eval_loss_before=metrics.eval_loss_before,
        eval_loss_best=metrics.eval_loss_best,
    )
    return card


def _tokenize(
    model: Any,
    tokenizer: Any,
    train: Sequence[ChatExample],
    eval: Sequence[ChatExample],
    options: FinetuneOptions,
) -> tuple[TokenizedSet, TokenizedSet]:
    from services.worker.engine.base import stop_token_ids

    encoder = ExampleTokenizer(
        tokenizer,
        max_length=options.max_length,
        system_prompt=options.system_prompt,
        stop_token_ids=stop_token_ids(model, tokenizer),
    )
    train_set, eval_set = encoder.encode_all(train), encoder.encode_all(eval)
    for name, encoded in (("training", train_set), ("eval", eval_set)):
        if not encoded.examples:
            raise ValueError(
                f"every {name} example's answer is longer than max_length={options.max_length} "
                "tokens: raise --max-length"
            )
    return train_set, eval_set


def _with_adapter(
    model: Any, targets: LoraTargets, blocks: list[int] | None, options: FinetuneOptions
) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(targets.modules),
        layers_to_transform=blocks,
        fan_in_fan_out=targets.fan_in_fan_out,
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(options.seed)  # the adapter's initial weights, whatever loading drew
    return get_peft_model(model, config)


def _pad_id(tokenizer: Any) -> int:
    # padding is neither attended to nor labelled: any id will do; the tokenizer's own if it has one
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _train(
    model: Any,
    train_set: TokenizedSet,
    eval_set: TokenizedSet,
    pad_id: int,
    options: FinetuneOptions,
    progress: bool,
) -> TrainingMetrics:
    import torch
    from transformers import get_scheduler

    examples = train_set.examples
    per_epoch = steps_per_epoch(len(examples), options.batch_size, options.gradient_accumulation)
    total = options.max_steps or options.epochs * per_epoch
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=options.learning_rate, weight_decay=options.weight_decay
    )
    scheduler = get_scheduler(
        options.lr_schedule.value,
        optimizer,
        num_warmup_steps=round(total * options.warmup_ratio),
        num_training_steps=total,
    )
    evaluator = _Evaluator(eval_set.examples, options.batch_size, pad_id)
    stopper = EarlyStopping(options.patience, options.min_improvement)
    eval_curve = [LossPoint(step=0, loss=evaluator.loss(model))]
    stopper.record(0, eval_curve[0].loss)
    best = _snapshot(model)

    step_losses: list[float] = []
    train_tokens, train_seconds = 0, 0.0
    bar = tqdm(total=total, desc="fine-tuning", unit="step", disable=not progress)
    bar.set_postfix(eval=f"{eval_curve[0].loss:.3f}")
    plans = plan_steps(
        [len(example.input_ids) for example in examples],
        batch_size=options.batch_size,
        accumulation=options.gradient_accumulation,
        total_steps=total,
        seed=options.seed,
        group_by_length=options.group_by_length,
    )
    model.train()
    for step, plan in enumerate(plans, start=1):
        began = time.monotonic()
        loss, tokens = _train_step(model, trainable, optimizer, plan, examples, pad_id, options)
        scheduler.step()
        train_seconds += time.monotonic() - began
        step_losses.append(loss)
        train_tokens += tokens
        bar.update()
        bar.set_postfix(loss=f"{loss:.3f}", eval=f"{eval_curve[-1].loss:.3f}")
        if step % options.eval_every == 0 or step == total:
            eval_curve.append(LossPoint(step=step, loss=evaluator.loss(model)))
            if stopper.record(step, eval_curve[-1].loss):
                best = _snapshot(model)
            if stopper.should_stop:
                break
    bar.close()
    _restore(model, best)

    steps = len(step_losses)
    return TrainingMetrics(
        steps=steps,
        best_step=stopper.best_step,
        stopped_early=steps < total,
        epochs=round(steps / per_epoch, 3),
        train_tokens=train_tokens,
        train_loss_first=step_losses[0],
        train_loss_last=step_losses[-1],
        train_loss_curve=_interval_means(step_losses, options.eval_every),
        eval_loss_before=eval_curve[0].loss,
        eval_loss_best=stopper.best_loss,
        eval_perplexity_before=_perplexity(eval_curve[0].loss),
        eval_perplexity_after=_perplexity(stopper.best_loss),
        eval_curve=eval_curve,
        wall_time_s=0.0,  # the caller's clock includes loading and saving
        seconds_per_step=round(train_seconds / steps, 3),
    )


def _train_step(
    model: Any,
    trainable: list[Any],
    optimizer: Any,
    plan: StepPlan,
    examples: Sequence[TokenizedExample],
    pad_id: int,
    options: FinetuneOptions,
) -> tuple[float, int]:
    """One optimizer step; returns its loss per answer token and the number of those tokens."""
    import torch

    groups = [[examples[index] for index in batch] for batch in plan.micro_batches]
    tokens = sum(label_count(group) for group in groups)
    loss_sum = 0.0
    for group in groups:
        # each micro-batch's summed loss over the step's tokens: the gradients add up to the mean
        loss = model(**pad_batch(group, pad_id), num_items_in_batch=tokens).loss
        loss.backward()
        loss_sum += loss.item()
    torch.nn.utils.clip_grad_norm_(trainable, options.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, tokens


class _Evaluator:
    """The mean loss per answer token over the eval split (batches of similar lengths, built
    once)."""

    def __init__(self, examples: Sequence[TokenizedExample], batch_size: int, pad_id: int):
        ordered = sorted(examples, key=lambda example: len(example.input_ids))
        self.batches = [
            pad_batch(ordered[start : start + batch_size], pad_id)
            for start in range(0, len(ordered), batch_size)
        ]
        self.tokens = label_count(examples)

    def loss(self, model: Any) -> float:
        import torch

        model.eval()
        with torch.inference_mode():
            total = sum(
                model(**batch, num_items_in_batch=self.tokens).loss.item() for batch in self.batches
            )
        model.train()
        return round(total, 6)


def _snapshot(model: Any) -> AdapterState:
    return {
        name: parameter.detach().clone()
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    }


def _restore(model: Any, state: AdapterState) -> None:
    import torch

    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in state:
                parameter.copy_(state[name])


def _interval_means(losses: Sequence[float], interval: int) -> list[LossPoint]:
    points = []
    for start in range(0, len(losses), interval):
        window = losses[start : start + interval]
        points.append(LossPoint(step=start + len(window), loss=round(sum(window) / len(window), 6)))
    return points


def _perplexity(loss: float) -> float:
    import math

    return round(math.exp(min(loss, 50.0)), 4)  # a diverged run must not overflow the card


def _card(
    base: BaseModelFolder,
    data: tuple[Sequence[ChatExample], Sequence[ChatExample]],
    encoded: tuple[TokenizedSet, TokenizedSet],
    targets: LoraTargets,
    blocks: list[int] | None,
    model: Any,
    options: FinetuneOptions,
    metrics: TrainingMetrics,
) -> TrainingCard:
    train, eval = data
    return TrainingCard(
        base_model=str(base.folder),
        base_model_name=base.name,
        base_fingerprint=base.fingerprint,
        data_sha256=data_sha256(train, eval),
        train_examples=len(train),
        eval_examples=len(eval),
        train_languages=language_counts(train),
        eval_languages=language_counts(eval),
        truncated_examples=sum(tokenized.truncated for tokenized in encoded),
        skipped_examples=sum(tokenized.skipped for tokenized in encoded),
        options=options,
        target_modules=list(targets.modules),
        adapted_blocks=blocks,
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        metrics=metrics,
        versions=library_versions(),
        created_at=datetime.now(UTC),
    )


def _check_output_folder(out_dir: Path) -> None:
    """``out_dir`` must be new, empty, or an adapter trained before (it is replaced): checked
    before the minutes of training, not after."""
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / CARD_NAME).is_file():
        raise ValueError(
            f"{out_dir} holds files that are not a chatq adapter; give a new or empty folder"
        )


def _swap_into_place(staging: Path, target: Path) -> None:
    retired = target.with_name(target.name + ".old")
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
