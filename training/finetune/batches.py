"""Which examples go into each optimizer step, and how a batch of them becomes tensors.

Every epoch is a fresh seeded shuffle. With ``group_by_length`` examples of similar length share
a batch (sorted within windows of a few batches, the batches then shuffled again): on a CPU a
batch costs what its longest example costs, and padding is most of the waste.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from training.finetune.tokenize import IGNORE_INDEX, TokenizedExample

_SORT_WINDOW_BATCHES = 16


@dataclass(frozen=True)
class StepPlan:
    epoch: int  # from 0
    micro_batches: list[list[int]]  # example indices; one backward pass each


def epoch_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random, group_by_length: bool
) -> list[list[int]]:
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        window = batch_size * _SORT_WINDOW_BATCHES
        order = [
            index
            for start in range(0, len(order), window)
            for index in sorted(order[start : start + window], key=lengths.__getitem__)
        ]
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def steps_per_epoch(examples: int, batch_size: int, accumulation: int) -> int:
    return math.ceil(math.ceil(examples / batch_size) / accumulation)


def plan_steps(
    lengths: Sequence[int],
    *,
    batch_size: int,
    accumulation: int,
    total_steps: int,
    seed: int,
    group_by_length: bool,
) -> Iterator[StepPlan]:
    """``total_steps`` optimizer steps over as many epochs as they take; the last step of an
    epoch may hold fewer micro-batches."""
    rng = random.Random(seed)
    done, epoch = 0, 0
    while done < total_steps:
        batches = epoch_batches(lengths, batch_size, rng, group_by_length)
        for start in range(0, len(batches), accumulation):
            if done == total_steps:
                return
            yield StepPlan(epoch, batches[start : start + accumulation])
            done += 1
        epoch += 1


def pad_batch(examples: Sequence[TokenizedExample], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: the padding comes after every real token, so positions need no
    correction, and its labels are IGNORE_INDEX."""
    import torch

    width = max(len(example.input_ids) for example in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        input_ids[row, :length] = torch.tensor(example.input_ids)
        labels[row, :length] = torch.tensor(example.labels)
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def label_count(examples: Sequence[TokenizedExample]) -> int:
    """Tokens the loss is computed on: every answer token (each follows at least one prompt
    token, so the causal shift drops none)."""
    return sum(example.answer_tokens for example in examples)
