"""The answers a worker would serve for held-out examples: its prompt builder (system prompt
first, earlier turns within the token budget) and its engine (``load_engine``: ONNX Runtime
unless ``CHATQ_ENGINE`` says otherwise), greedy, in batches of the worker's batch size."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from services.worker.engine import Engine, GenerationRequest, GenerationResult, load_engine
from services.worker.prompt import PromptBuilder
from shared.config import Settings
from shared.messaging.schemas import ChatTurn, GenerationParams
from training.data.examples import ChatExample

Message = dict[str, str]


def load_serving_engine(model_dir: Path, settings: Settings) -> Engine:
    """The engine a worker configured by ``settings`` would load for the model in ``model_dir``."""
    serving = settings.model_copy(update={"model_dir": model_dir.expanduser().resolve()})
    return load_engine(serving)


def serving_prompts(engine: Engine, settings: Settings) -> PromptBuilder:
    return PromptBuilder(
        settings.system_prompt, settings.max_prompt_tokens, engine.count_prompt_tokens
    )


def serving_messages(example: ChatExample, prompts: PromptBuilder) -> list[Message]:
    """The chat the worker would give its engine for ``example``'s question: the example's own
    system turn (a tenant's prompt) or else the configured one, the earlier turns, the question.
    """
    turns = example.messages[:-1]
    system = turns[0].content if turns[0].role == "system" else None
    conversation = turns[1:] if system is not None else turns
    if any(turn.role == "system" for turn in conversation):
        raise ValueError(
            "only the first turn of an example may be a system turn (the worker puts one system "
            f"prompt before the conversation): {example.messages[0].content[:80]!r}"
        )
    if conversation[-1].role != "user":
        raise ValueError(
            "the turn before an example's answer must be the customer's question, "
            f"not {conversation[-1].role!r}"
        )
    history = [ChatTurn(role=turn.role, content=turn.content) for turn in conversation[:-1]]
    return prompts.build(history, conversation[-1].content, system_prompt=system)


def generate_answers(
    engine: Engine,
    conversations: Sequence[list[Message]],
    *,
    max_new_tokens: int,
    batch_size: int,
    progress: bool = True,
) -> list[GenerationResult]:
    """Greedy answers to ``conversations``, in their order.

    Conversations of similar length go together, so that a batch pads little (the worker
    batches by arrival; here the order is ours to choose and only the answers matter).
    """
    params = GenerationParams(max_new_tokens=max_new_tokens)  # temperature 0: greedy
    lengths = [engine.count_prompt_tokens(messages) for messages in conversations]
    order = sorted(range(len(conversations)), key=lengths.__getitem__)
    results: dict[int, GenerationResult] = {}
    with tqdm(total=len(order), desc="answering", unit="example", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            requests = [GenerationRequest(str(i), conversations[i], params) for i in batch]
            for index, result in zip(batch, engine.generate(requests), strict=True):
                results[index] = result
            bar.update(len(batch))
    return [results[index] for index in range(len(conversations))]
