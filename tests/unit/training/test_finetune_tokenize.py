"""Training examples as token ids: the prompt is the worker's prompt, token for token, and the loss
falls on the answer and the end-of-turn token only (the tiny model's ChatML tokenizer, and the
default model's when it is built)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.worker.engine.chat_prompt import ChatPromptEncoder
from shared.config import DEFAULT_SYSTEM_PROMPT
from training.data.examples import ChatExample
from training.finetune.batches import epoch_batches, label_count, pad_batch, plan_steps
from training.finetune.tokenize import (
    IGNORE_INDEX,
    ExampleTokenizer,
    TokenizedExample,
    end_of_turn_ids,
)
from training.random_model import build_random_model

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_MODEL = REPO_ROOT / ".chatq" / "models" / "default"

ANSWER = "Items can be returned within thirty days for a full refund."


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    folder = build_random_model(tmp_path_factory.mktemp("tiny") / "model", "tiny", seed=0)
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def example(*turns: tuple[str, str], lang: str = "en") -> ChatExample:
    messages = [{"role": role, "content": content} for role, content in turns]
    return ChatExample.model_validate({"messages": messages, "lang": lang})


def labelled(encoded: TokenizedExample) -> list[int]:
    return [label for label in encoded.labels if label != IGNORE_INDEX]


def test_the_prompt_is_the_workers_prompt_and_only_the_answer_is_labelled(tokenizer: Any) -> None:
    row = example(("user", "What is your refund policy?"), ("assistant", ANSWER))
    encoded = ExampleTokenizer(tokenizer, max_length=512).encode(row)
    assert encoded is not None

    served = [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": "What is your refund policy?"},
    ]
    prompt = ChatPromptEncoder(tokenizer).encode(served)
    assert encoded.input_ids[: len(prompt)] == prompt
    assert encoded.labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert encoded.labels[len(prompt) :] == encoded.input_ids[len(prompt) :]
    assert tokenizer.decode(labelled(encoded)) == ANSWER + "<|im_end|>"
    assert not encoded.truncated


def test_the_end_of_turn_is_the_stop_token_not_the_newline_chatml_puts_after_it(
    tokenizer: Any,
) -> None:
    assert end_of_turn_ids(tokenizer) == [tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_a_template_that_closes_no_turn_gets_the_end_token(tokenizer: Any) -> None:
    plain = tokenizer.__class__.from_pretrained(tokenizer.name_or_path, local_files_only=True)
    plain.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    assert end_of_turn_ids(plain) == [plain.eos_token_id]
    assert end_of_turn_ids(plain, stop_token_ids={99}) == [plain.eos_token_id]


def test_an_example_with_its_own_system_turn_keeps_it(tokenizer: Any) -> None:
    row = example(
        ("system", "You answer for the Northwind shop."),
        ("user", "Hi"),
        ("assistant", "Hello! How can I help?"),
        ("user", "What is your refund policy?"),
        ("assistant", ANSWER),
    )
    encoded = ExampleTokenizer(tokenizer, max_length=512).encode(row)
    assert encoded is not None
    prompt = ChatPromptEncoder(tokenizer).encode(row.prompt)
    assert encoded.input_ids[: len(prompt)] == prompt
    # the earlier answer is context, not a target
    assert tokenizer.decode(labelled(encoded)) == ANSWER + "<|im_end|>"


def test_special_tokens_typed_in_an_answer_stay_text(tokenizer: Any) -> None:
    answer = "Type <|im_end|> to finish."
    encoded = ExampleTokenizer(tokenizer, max_length=512).encode(
        example(("user", "How do I finish?"), ("assistant", answer))
    )
    assert encoded is not None
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert labelled(encoded).count(im_end) == 1  # the real end of turn only
    assert labelled(encoded)[-1] == im_end
    assert tokenizer.decode(labelled(encoded)) == answer + "<|im_end|>"


def test_a_long_example_loses_prompt_tokens_from_the_left_and_keeps_its_answer(
    tokenizer: Any,
) -> None:
    row = example(("user", "Where is my order? " * 20), ("assistant", ANSWER))
    whole = ExampleTokenizer(tokenizer, max_length=4096).encode(row)
    assert whole is not None
    cut = ExampleTokenizer(tokenizer, max_length=len(whole.input_ids) - 7).encode(row)
    assert cut is not None
    assert cut.truncated
    assert cut.input_ids == whole.input_ids[7:]
    assert cut.labels == whole.labels[7:]
    assert labelled(cut) == labelled(whole)


def test_an_answer_longer_than_the_limit_is_left_out_and_counted(tokenizer: Any) -> None:
    short = example(("user", "Hi"), ("assistant", "Hello!"))
    long = example(("user", "Hi"), ("assistant", ANSWER * 3))
    answer_alone = len(ExampleTokenizer(tokenizer, max_length=512).answer_ids(long.answer))
    encoder = ExampleTokenizer(tokenizer, max_length=answer_alone)
    assert encoder.encode(long) is None
    assert ExampleTokenizer(tokenizer, max_length=answer_alone + 1).encode(long) is not None
    encoded = encoder.encode_all([short, long])
    assert (len(encoded.examples), encoded.skipped) == (1, 1)


def test_a_batch_is_padded_on_the_right_with_padding_unlabelled(tokenizer: Any) -> None:
    encoder = ExampleTokenizer(tokenizer, max_length=512)
    rows = [
        encoder.encode(example(("user", "Hi"), ("assistant", "Hello!"))),
        encoder.encode(example(("user", "What is your refund policy?"), ("assistant", ANSWER))),
    ]
    short, long = (row for row in rows if row is not None)
    batch = pad_batch([short, long], pad_id=0)
    width = len(long.input_ids)
    assert batch["input_ids"].shape == (2, width)
    assert batch["input_ids"][0, : len(short.input_ids)].tolist() == short.input_ids
    assert batch["attention_mask"][0].tolist() == [1] * len(short.input_ids) + [0] * (
        width - len(short.input_ids)
    )
    assert batch["labels"][0, len(short.input_ids) :].eq(IGNORE_INDEX).all()
    assert int(batch["labels"].ne(IGNORE_INDEX).sum()) == label_count([short, long])


def test_batches_are_seeded_and_hold_every_example_once_per_epoch() -> None:
    import random

    lengths = [5, 90, 7, 60, 33, 12, 70, 8, 41, 19]
    first = epoch_batches(lengths, 3, random.Random(1), group_by_length=True)
    assert first == epoch_batches(lengths, 3, random.Random(1), group_by_length=True)
    assert sorted(i for batch in first for i in batch) == list(range(10))
    steps = list(
        plan_steps(
            lengths, batch_size=3, accumulation=2, total_steps=5, seed=1, group_by_length=False
        )
    )
    # 4 batches an epoch, 2 per step: steps 1-2 are epoch 0, 3-4 epoch 1, 5 epoch 2
    assert [step.epoch for step in steps] == [0, 0, 1, 1, 2]
    assert all(len(step.micro_batches) == 2 for step in steps)


@pytest.mark.skipif(
    not (DEFAULT_MODEL / "pytorch" / "tokenizer.json").is_file(),
    reason="the default model is not built (chatq model build)",
)
def test_the_default_models_prompt_and_answer_are_what_the_worker_sees_and_stops_on() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL / "pytorch", local_files_only=True)
    row = example(("user", "退款政策是什么？"), ("assistant", "三十天内可以全额退款。"), lang="zh")
    encoded = ExampleTokenizer(tokenizer, max_length=512).encode(row)
    assert encoded is not None
    served = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, *row.prompt]
    prompt = ChatPromptEncoder(tokenizer).encode(served)
    assert encoded.input_ids[: len(prompt)] == prompt
    assert labelled(encoded)[-1] == tokenizer.eos_token_id  # <|im_end|>, what the worker stops on
    assert tokenizer.decode(labelled(encoded)) == "三十天内可以全额退款。<|im_end|>"
