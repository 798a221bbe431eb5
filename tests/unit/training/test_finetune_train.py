"""LoRA fine-tuning on the tiny model (a few steps, one thread): the same seed and data give the
same adapter, the adapter kept is the best one on the eval split, gradient accumulation trains as
one large batch would, and the training card says what was trained on what."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.data.examples import ChatExample
from training.finetune.base_model import locate_base_model
from training.finetune.card import CARD_NAME, TrainingCard, data_sha256
from training.finetune.early_stopping import EarlyStopping
from training.finetune.options import FinetuneOptions
from training.finetune.train import finetune
from training.random_model import build_random_model

QA = [
    ("What is your refund policy?", "Items can be returned within thirty days for a full refund."),
    ("Where is my order?", "Your order has shipped and will arrive in two to three business days."),
    (
        "How do I reset my router?",
        "Hold the reset button for ten seconds, then wait for the light.",
    ),
    ("Can I change my delivery address?", "Yes, before the order ships you can change it."),
    ("退款政策是什么？", "三十天内可以全额退款。"),
    ("我的订单在哪里？", "您的订单已发货。"),
]
QUICK = FinetuneOptions(
    rank=4, alpha=8, top_layers=None, learning_rate=1e-2, batch_size=2, max_steps=4,
    eval_every=2, max_length=128, threads=1, seed=0,
)  # fmt: skip


def example(question: str, answer: str) -> ChatExample:
    lang = "zh" if any("\u4e00" <= c <= "\u9fff" for c in question) else "en"
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return ChatExample.model_validate({"messages": messages, "lang": lang})


TRAIN = [example(question, answer) for question, answer in QA]
EVAL = [
    example("Can I get my money back?", QA[0][1]),
    example("我的包裹到哪了？", QA[5][1]),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chatq model folder: the tiny Hugging Face model in pytorch/."""
    root = tmp_path_factory.mktemp("base") / "model"
    build_random_model(root / "pytorch", "tiny", seed=0)
    return root


def weights(adapter_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(adapter_dir / "adapter_model.safetensors")


def eval_loss_of_saved_adapter(
    base: Path, adapter_dir: Path, eval: list[ChatExample], options: FinetuneOptions
) -> float:
    """The eval loss of the adapter on disk, computed afresh."""
    from peft import PeftModel

    from training.finetune.base_model import load_base_model, locate_base_model
    from training.finetune.train import _Evaluator, _pad_id, _tokenize

    model, tokenizer = load_base_model(locate_base_model(base))
    _train_set, eval_set = _tokenize(model, tokenizer, TRAIN, eval, options)
    adapted = PeftModel.from_pretrained(model, adapter_dir)
    return _Evaluator(eval_set.examples, options.batch_size, _pad_id(tokenizer)).loss(adapted)


@pytest.fixture(scope="module")
def trained(base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainingCard]:
    out = tmp_path_factory.mktemp("adapter") / "shop"
    return out, finetune(base, TRAIN, EVAL, out, QUICK, progress=False)


def test_the_same_seed_and_data_give_the_same_adapter(
    base: Path, trained: tuple[Path, TrainingCard], tmp_path: Path
) -> None:
    first, card = trained
    again = finetune(base, TRAIN, EVAL, tmp_path / "again", QUICK, progress=False)
    finetune(
        base, TRAIN, EVAL, tmp_path / "other", QUICK.model_copy(update={"seed": 1}), progress=False
    )
    ours, repeated, reseeded = (
        weights(first),
        weights(tmp_path / "again"),
        weights(tmp_path / "other"),
    )
    assert ours.keys() == repeated.keys() and ours
    assert all(torch.equal(ours[name], repeated[name]) for name in ours)
    assert again.metrics.eval_curve == card.metrics.eval_curve
    assert not all(torch.equal(ours[name], reseeded[name]) for name in ours)


def test_training_lowers_the_eval_loss_and_the_card_says_what_was_trained_on_what(
    base: Path, trained: tuple[Path, TrainingCard]
) -> None:
    out, card = trained
    assert TrainingCard.read(out) == card
    assert (out / "adapter_config.json").is_file()
    assert card.base_model == str((base / "pytorch").resolve())
    assert card.base_fingerprint == locate_base_model(base / "pytorch").fingerprint
    assert card.data_sha256 == data_sha256(TRAIN, EVAL)
    assert (card.train_examples, card.eval_examples) == (6, 2)
    assert card.train_languages == {"en": 4, "zh": 2}
    assert card.eval_languages == {"en": 1, "zh": 1}
    assert card.options == QUICK
    assert card.target_modules == [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    ]  # fmt: skip
    assert set(card.versions) == {"torch", "transformers", "peft"}
    metrics = card.metrics
    assert metrics.steps == 4 and not metrics.stopped_early
    assert [point.step for point in metrics.eval_curve] == [0, 2, 4]
    assert metrics.eval_loss_best < metrics.eval_loss_before
    assert metrics.eval_perplexity_after < metrics.eval_perplexity_before
    assert metrics.eval_loss_best == min(point.loss for point in metrics.eval_curve)
    assert metrics.train_loss_last < metrics.train_loss_first
    assert [point.step for point in metrics.train_loss_curve] == [2, 4]


def test_early_stopping_keeps_the_best_adapter_not_the_last(base: Path, tmp_path: Path) -> None:
    # eval answers that contradict the training answers: the more it learns, the worse eval gets
    contradicting = [example(question, "No.") for question, _answer in QA[:2]]
    options = QUICK.model_copy(
        update={"max_steps": 30, "eval_every": 1, "patience": 2, "learning_rate": 3e-2}
    )
    out = tmp_path / "stopped"
    card = finetune(base, TRAIN, contradicting, out, options, progress=False)
    metrics = card.metrics
    assert metrics.stopped_early and metrics.steps < 30
    assert metrics.best_step == metrics.steps - 2  # two evaluations without improvement
    last = metrics.eval_curve[-1].loss
    assert last > metrics.eval_loss_best
    reloaded = eval_loss_of_saved_adapter(base, out, contradicting, options)
    assert reloaded == pytest.approx(metrics.eval_loss_best, abs=1e-5)


def test_gradient_accumulation_trains_as_one_large_batch(base: Path, tmp_path: Path) -> None:
    same = {"dropout": 0.0, "group_by_length": False, "max_steps": 2, "eval_every": 2}
    large = QUICK.model_copy(update={**same, "batch_size": 4, "gradient_accumulation": 1})
    accumulated = QUICK.model_copy(update={**same, "batch_size": 2, "gradient_accumulation": 2})
    finetune(base, TRAIN, EVAL, tmp_path / "large", large, progress=False)
    finetune(base, TRAIN, EVAL, tmp_path / "accumulated", accumulated, progress=False)
    one, two = weights(tmp_path / "large"), weights(tmp_path / "accumulated")
    assert all(torch.allclose(one[name], two[name], atol=1e-5) for name in one)


def test_a_hugging_face_folder_is_a_base_too_and_top_layers_adapts_only_those(
    base: Path, tmp_path: Path
) -> None:
    options = QUICK.model_copy(update={"top_layers": 1, "max_steps": 1, "threads": 1})
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        card = finetune(base / "pytorch", TRAIN, EVAL, tmp_path / "top", options, progress=False)
        assert torch.get_num_threads() == 2  # the caller's setting, given back
    finally:
        torch.set_num_threads(threads)
    assert card.base_model == str((base / "pytorch").resolve())
    assert card.adapted_blocks == [1]  # the tiny model has two blocks
    assert all(".layers.1." in name for name in weights(tmp_path / "top"))


def test_a_run_without_eval_examples_or_into_a_foreign_folder_is_refused(
    base: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="no eval examples"):
        finetune(base, TRAIN, [], tmp_path / "out", QUICK, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a chatq adapter"):
        finetune(base, TRAIN, EVAL, foreign, QUICK, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"
    with pytest.raises(FileNotFoundError, match="neither a chatq model folder"):
        finetune(tmp_path, TRAIN, EVAL, tmp_path / "out", QUICK, progress=False)


def test_a_second_run_replaces_the_adapter_it_wrote_before(
    base: Path, trained: tuple[Path, TrainingCard], tmp_path: Path
) -> None:
    first, _card = trained
    out = tmp_path / "rerun"
    shutil.copytree(first, out)
    options = QUICK.model_copy(update={"max_steps": 2})
    card = finetune(base, TRAIN, EVAL, out, options, progress=False)
    assert TrainingCard.read(out) == card
    assert sorted(path.name for path in out.iterdir()) == sorted(p.name for p in first.iterdir())
    assert not out.with_name("rerun.partial").exists()
    assert (out / CARD_NAME).is_file()


def test_the_data_hash_follows_the_examples() -> None:
    assert data_sha256(TRAIN, EVAL) == data_sha256(list(TRAIN), list(EVAL))
    changed = [*TRAIN[:-1], example(QA[-1][0], "您的订单明天到。")]
    assert data_sha256(changed, EVAL) != data_sha256(TRAIN, EVAL)
    assert data_sha256(EVAL, TRAIN) != data_sha256(TRAIN, EVAL)  # which side matters


def test_early_stopping_counts_evaluations_without_improvement() -> None:
    stopper = EarlyStopping(patience=2, min_improvement=0.1)
    assert stopper.record(0, 3.0)
    assert stopper.record(10, 2.5)
    assert not stopper.record(20, 2.45)  # less than min_improvement
    assert not stopper.should_stop
    assert not stopper.record(30, 2.6)
    assert stopper.should_stop
    assert (stopper.best_step, stopper.best_loss) == (10, 2.5)
    never = EarlyStopping(patience=0)
    never.record(0, 1.0)
    for step in range(1, 10):
        never.record(step, 2.0)
    assert not never.should_stop
