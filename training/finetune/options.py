"""Every setting of a LoRA fine-tuning run, with its default, bound and meaning; the training card
records them all.

The defaults fit a CPU. On the 2-core development machine, one epoch over the bundled shop set
(307 train / 54 eval rows, SmolLM2-135M, 39 steps of 8) with adapters on the last 8 of 30 blocks
took 6.9 minutes (6.6-7.8 s a step, 2 threads) and lowered the eval loss from 2.74 to 2.11
(perplexity 15.4 to 8.2); at a learning rate of 1e-3 it reached 2.28. The forward pass through
every block is the floor of a step's cost: adapting the last 4 blocks saved only 0.6 s a step
(eval loss 2.42), adapting all 30 cost about 1.3 times the last 8's.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.config import DEFAULT_SYSTEM_PROMPT
from training.finetune.targets import TargetScope


class LrSchedule(StrEnum):
    """transformers' ``get_scheduler`` names: after the warm-up, decay to zero or stay."""

    LINEAR = "linear"
    COSINE = "cosine"
    CONSTANT = "constant_with_warmup"


class FinetuneOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: int = Field(16, ge=1, le=256)
    """LoRA rank r: the width of the low-rank update."""
    alpha: int = Field(32, ge=1, le=1024)
    """LoRA alpha; the update is scaled by alpha / rank."""
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """Dropout on the LoRA input during training."""
    target_scope: TargetScope = TargetScope.ATTENTION_MLP
    """Adapt the attention projections only, or the MLP's as well."""
    target_modules: tuple[str, ...] | None = None
    """Layer names to adapt, overriding the architecture's table."""
    top_layers: int | None = Field(8, ge=1)
    """Adapt only the last N transformer blocks (None: all); backpropagation stops at the lowest
    adapted one, so fewer blocks train faster."""

    learning_rate: float = Field(2e-3, gt=0.0, le=1.0)
    """AdamW's peak learning rate."""
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    """AdamW's decoupled weight decay."""
    lr_schedule: LrSchedule = LrSchedule.COSINE
    """How the learning rate falls after the warm-up."""
    warmup_ratio: float = Field(0.05, ge=0.0, le=0.5)
    """Share of the steps over which the learning rate rises from zero."""
    max_grad_norm: float = Field(1.0, gt=0.0)
    """Gradients are clipped to this norm."""

    epochs: int = Field(1, ge=1, le=100)
    """Passes over the training examples (unless max_steps is set)."""
    max_steps: int | None = Field(None, ge=1)
    """Optimizer steps to run, overriding epochs."""
    batch_size: int = Field(8, ge=1, le=512)
    """Examples per forward pass."""
    gradient_accumulation: int = Field(1, ge=1, le=256)
    """Forward passes per optimizer step."""
    max_length: int = Field(256, ge=8, le=32_768)
    """Tokens per example; longer prompts lose their oldest tokens."""
    group_by_length: bool = True
    """Batch examples of similar length together (less padding)."""

    eval_every: int = Field(20, ge=1)
    """Optimizer steps between evaluations on the eval split."""
    patience: int = Field(3, ge=0)
    """Evaluations without improvement before stopping early; 0 never stops early."""
    min_improvement: float = Field(0.0, ge=0.0)
    """How much the eval loss must fall to count as an improvement."""

    seed: int = 0
    """Seeds the LoRA initialisation, dropout and the shuffles: same seed + data, same adapter."""
    threads: int = Field(0, ge=0, le=256)
    """PyTorch intra-op threads; 0 leaves PyTorch's choice. On a CPU other processes keep busy,
    1 can be much faster (its threads wait for each other)."""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    """The system prompt the worker serves with, put before examples that have none."""
