"""``chatq train run`` end to end on the tiny model and a slice of the bundled data: every step
runs, each leaves its file, and the result is a registered model version that a worker's engine
loads and answers with."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatq.cli import main as chatq_main
from services.worker.engine import GenerationRequest, load_engine
from shared.config import Settings, get_settings
from shared.messaging.schemas import GenerationParams
from shared.model_versions import list_model_versions
from training.data.examples import read_examples, write_examples
from training.datasets import SHOP_INSTRUCTIONS

pytestmark = pytest.mark.integration


@pytest.fixture
def command_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path
) -> Iterator[Settings]:
    monkeypatch.setenv("CHATQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CHATQ_MODEL_DIR", str(tiny_model_dir))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_train_run_ends_with_a_registered_servable_version(
    command_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = read_examples(SHOP_INSTRUCTIONS)
    data = tmp_path / "slice.jsonl"
    write_examples(data, rows[:24] + rows[-24:])  # both languages
    code = chatq_main(
        ["train", "run", "--name", "shop-tiny", "--data", str(data), "--max-steps", "2",
         "--eval-limit", "3", "--max-new-tokens", "6", "--activate"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "model version shop-tiny registered and activated" in out
    assert "held-out split: base vs shop-tiny" in out

    work = command_env.data_dir / "train" / "shop-tiny"
    for name in ("clean.jsonl", "clean.report.json", "eval.jsonl", "train.jsonl", "report.json"):
        assert (work / name).is_file(), name
    eval_rows, train_rows = read_examples(work / "eval.jsonl"), read_examples(work / "train.jsonl")
    assert eval_rows and not any(row.augmented for row in eval_rows)
    assert any(row.augmented for row in train_rows)  # augmentation reached the train side only
    report = json.loads((work / "report.json").read_text())
    assert report["training_card"]["metrics"]["steps"] == 2

    (version,) = list_model_versions(command_env.database_url)
    assert (version.name, version.active) == ("shop-tiny", True)
    assert version.card["held_out"]["examples"] == 3
    engine = load_engine(command_env, version.path, label=version.name, version=version.name)
    messages = [{"role": "user", "content": "Can I return a kettle?"}]
    (answer,) = engine.generate(
        [GenerationRequest("a", messages, GenerationParams(max_new_tokens=4))]
    )
    assert answer.error is None and engine.info.version == "shop-tiny"

    # the name is taken now: a second run is refused before any work
    assert chatq_main(["train", "run", "--name", "shop-tiny", "--data", str(data)]) == 1
    assert "exists already" in capsys.readouterr().err
