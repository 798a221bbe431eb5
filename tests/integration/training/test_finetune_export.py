"""Fine-tune, export, serve: a LoRA adapter trained a few steps on the tiny model, merged and built
into a model folder, answers through the worker's ONNX engine with exactly the greedy tokens of
PyTorch base + adapter, and not with the base model's (the adapter did something)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from services.worker.engine import GenerationRequest
from services.worker.engine.chat_prompt import ChatPromptEncoder
from services.worker.engine.onnx_runtime import load_onnx_engine
from shared.config import DEFAULT_SYSTEM_PROMPT, Device
from shared.messaging.schemas import GenerationParams
from shared.model_layout import ModelLayout, ModelManifest
from training.data.examples import ChatExample, write_examples
from training.finetune.card import CARD_NAME, TrainingCard
from training.finetune.commands import add_finetune_parsers
from training.finetune.export import export_finetuned
from training.finetune.options import FinetuneOptions
from training.finetune.train import finetune
from training.random_model import build_random_model

NEW_TOKENS = 12
QUESTIONS = ["What is your refund policy?", "Where is my order?", "退款政策是什么？"]
QA = [
    ("What is your refund policy?", "Items can be returned within thirty days for a full refund."),
    ("Where is my order?", "Your order has shipped and will arrive in two to three business days."),
    ("Can I change my delivery address?", "Yes, before the order ships you can change it."),
    ("退款政策是什么？", "三十天内可以全额退款。"),
]
OPTIONS = FinetuneOptions(
    rank=4, alpha=8, top_layers=None, learning_rate=2e-2, batch_size=2, max_steps=6,
    eval_every=3, max_length=128, threads=1,
)  # fmt: skip


def example(question: str, answer: str) -> ChatExample:
    lang = "zh" if any("\u4e00" <= c <= "\u9fff" for c in question) else "en"
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return ChatExample.model_validate({"messages": messages, "lang": lang})


TRAIN = [example(question, answer) for question, answer in QA]
EVAL = [example("Can I get my money back?", QA[0][1])]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, ModelManifest]:
    root = tmp_path_factory.mktemp("finetune")
    base = root / "base"
    build_random_model(base / "pytorch", "tiny", seed=0)
    adapter = root / "adapter"
    finetune(base, TRAIN, EVAL, adapter, OPTIONS, progress=False)
    served = root / "served"
    manifest = export_finetuned(base, adapter, served, progress=False)
    return base, adapter, served, manifest


def messages(question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": question},
    ]


def pytorch_tokens(model: Any, tokenizer: Any) -> list[list[int]]:
    answers = []
    for question in QUESTIONS:
        ids = torch.tensor([ChatPromptEncoder(tokenizer).encode(messages(question))])
        with torch.inference_mode():
            output = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        answers.append(output[0, ids.shape[1] :].tolist())
    return answers


def test_the_served_model_answers_as_pytorch_base_plus_adapter_and_not_as_the_base(
    exported: tuple[Path, Path, Path, ModelManifest],
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, adapter, served, manifest = exported
    engine = load_onnx_engine(ModelLayout(served).onnx_dir, Device.CPU, 1, manifest.name)
    params = GenerationParams(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    requests = [GenerationRequest(str(i), messages(q), params) for i, q in enumerate(QUESTIONS)]
    onnx = [list(result.token_ids) for result in engine.generate(requests)]

    tokenizer = AutoTokenizer.from_pretrained(base / "pytorch", local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        base / "pytorch", dtype=torch.float32, local_files_only=True
    ).eval()
    before = pytorch_tokens(model, tokenizer)
    adapted = PeftModel.from_pretrained(model, adapter).eval()
    assert onnx == pytorch_tokens(adapted, tokenizer)
    assert onnx != before


def test_the_exported_folder_is_a_built_model_with_its_training_card(
    exported: tuple[Path, Path, Path, ModelManifest],
) -> None:
    base, adapter, served, manifest = exported
    layout = ModelLayout(served)
    assert layout.require_manifest() == manifest
    assert manifest.parity.identical
    assert manifest.name == "base+adapter"
    assert manifest.source == f"{(base / 'pytorch').resolve()} + {adapter.resolve()}"
    assert TrainingCard.read(served) == TrainingCard.read(adapter)
    assert (layout.pytorch_dir / "chat_template.jinja").is_file()
    assert not served.with_name("served.merged").exists()


def test_an_adapter_is_only_merged_into_the_weights_it_was_trained_on(
    exported: tuple[Path, Path, Path, ModelManifest], tmp_path: Path
) -> None:
    base, adapter, _served, _manifest = exported
    other = tmp_path / "other"
    build_random_model(other / "pytorch", "tiny", seed=1)
    with pytest.raises(ValueError, match="give that model as --base"):
        export_finetuned(other, adapter, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="the base model's own folder"):
        export_finetuned(base, adapter, base, progress=False)
    with pytest.raises(FileNotFoundError, match="holds no LoRA adapter"):
        export_finetuned(base, tmp_path, tmp_path / "out", progress=False)


def test_the_commands_train_and_export_from_files(
    exported: tuple[Path, Path, Path, ModelManifest],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse

    base, _adapter, _served, _manifest = exported
    write_examples(tmp_path / "train.jsonl", TRAIN)
    write_examples(tmp_path / "eval.jsonl", EVAL)
    parser = argparse.ArgumentParser()
    add_finetune_parsers(parser.add_subparsers(dest="action", required=True))

    args = parser.parse_args(
        [
            "finetune", "--train", str(tmp_path / "train.jsonl"),
            "--eval", str(tmp_path / "eval.jsonl"), "--out", str(tmp_path / "adapter"),
            "--base", str(base), "--max-steps", "2", "--batch-size", "2", "--rank", "2",
            "--top-layers", "all", "--threads", "1", "--lr", "0.01",
        ]
    )  # fmt: skip
    assert args.handler(args) == 0
    card = TrainingCard.read(tmp_path / "adapter")
    assert card is not None
    assert (card.options.rank, card.options.max_steps, card.options.top_layers) == (2, 2, None)
    assert card.metrics.steps == 2
    assert "chatq train export --adapter" in capsys.readouterr().out

    args = parser.parse_args(
        ["export", "--adapter", str(tmp_path / "adapter"), "--base", str(base),
         "--out", str(tmp_path / "served")]
    )  # fmt: skip
    assert args.handler(args) == 0
    assert (tmp_path / "served" / CARD_NAME).is_file()
    assert ModelLayout(tmp_path / "served").require_manifest().parity.identical
