"""Perplexity of reference answers given their prompts, on the PyTorch reference model.

Only the answer is scored: its tokens (the text as the worker's prompt encoder would tokenise a
message, special-token look-alikes kept as text) and the end-of-turn token after them, so that
knowing when to stop counts too. The prompt is encoded as the worker encodes it
(``ChatPromptEncoder``); its tokens condition the answer and are never scored themselves.

Rows are padded on the left, so every answer ends at the last column and only the last
positions' logits are computed (``logits_to_keep``, where the model takes it); position ids
are counted from each row's first real token, as ``generate`` does.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from services.worker.engine.chat_prompt import ChatPromptEncoder

Message = dict[str, str]


@dataclass(frozen=True)
class AnswerLoss:
    nll: float  # summed negative log-likelihood of the answer's tokens, in nats
    tokens: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll / self.tokens)


def corpus_perplexity(losses: Iterable[AnswerLoss]) -> float | None:
    """Perplexity of all the answers' tokens together (each token counts once, so a long answer
    weighs more than a short one); ``None`` for no tokens."""
    nll, tokens = 0.0, 0
    for loss in losses:
        nll += loss.nll
        tokens += loss.tokens
    return math.exp(nll / tokens) if tokens else None


def load_reference_model(pytorch_dir: Path, threads: int = 0) -> tuple[Any, Any]:
    """The fp32 PyTorch model and tokenizer of a built model's ``pytorch/`` folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (pytorch_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{pytorch_dir} holds no PyTorch model; perplexity needs the pytorch/ folder that "
            "`chatq model build` writes"
        )
    if threads:
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(pytorch_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        pytorch_dir, dtype=torch.float32, local_files_only=True
    )
    return model.eval(), tokenizer


def answer_token_ids(tokenizer: Any, answer: str) -> list[int]:
    """The answer's tokens as the model would write them: the text, then the end token."""
    ids: list[int] = tokenizer(answer, add_special_tokens=False, split_special_tokens=True)[
        "input_ids"
    ]
    if tokenizer.eos_token_id is not None:
        ids = [*ids, tokenizer.eos_token_id]
    return ids


def answer_losses(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[list[Message]],
    answers: Sequence[str],
    *,
    batch_size: int = 8,
    progress: bool = True,
) -> list[AnswerLoss]:
    """The loss of each answer given its conversation, in their order."""
    encoder = ChatPromptEncoder(tokenizer)
    prompts = [encoder.encode(messages) for messages in conversations]
    targets = [answer_token_ids(tokenizer, answer) for answer in answers]
    if any(not prompt for prompt in prompts):
        raise ValueError("a prompt encoded to no tokens: there is nothing to condition on")
    # similar lengths together: less padding
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(targets[i]))
    losses: dict[int, AnswerLoss] = {}
    with tqdm(total=len(order), desc="perplexity", unit="example", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            scored = _batch_losses(
                model, [prompts[i] for i in batch], [targets[i] for i in batch], tokenizer
            )
            losses.update(zip(batch, scored, strict=True))
            bar.update(len(batch))
    return [losses[index] for index in range(len(prompts))]


def _batch_losses(
    model: Any, prompts: list[list[int]], targets: list[list[int]], tokenizer: Any
) -> list[AnswerLoss]:
    import torch

    rows = [prompt + target for prompt, target in zip(prompts, targets, strict=True)]
    width = max(len(row) for row in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for number, row in enumerate(rows):
        input_ids[number, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[number, width - len(row) :] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)

    # the logit at position p predicts the token at p + 1: the answers' tokens (the last
    # ``longest`` columns) are predicted by the ``longest`` columns before them
    longest = max(len(target) for target in targets)
    kwargs: dict[str, Any] = {}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = longest + 1
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            **kwargs,
        ).logits.float()
    predicting = logits[:, -(longest + 1) : -1, :]
    log_probs = torch.log_softmax(predicting, dim=-1)
    chosen = log_probs.gather(-1, input_ids[:, -longest:, None].to(device))[..., 0]
    return [
        AnswerLoss(nll=-float(chosen[number, longest - len(target) :].sum()), tokens=len(target))
        for number, target in enumerate(targets)
    ]
