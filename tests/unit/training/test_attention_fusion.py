"""Each layer's attention as one GroupQueryAttention (training/attention_fusion.py): on a tiny
random Llama (4 query heads, 2 KV heads), the fused graph gives the logits of the graph optimum
exported, for left-padded rows of different lengths over several decode steps, and with rows
leaving and joining as the worker's engine batches them; a graph that does not match is refused
and left untouched."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from services.worker.engine import GenerationRequest
from services.worker.engine.onnx_runtime import load_onnx_engine
from shared.config import Device
from shared.messaging.schemas import GenerationParams
from training.attention_fusion import AttentionPatternError, fuse_attention
from training.random_model import build_random_model
from training.variants import ONNX_FILE, fuse_graph

# the export is the slow part (seconds of tracing): built once, like the suite's tiny model
EXPORT_CACHE = Path(__file__).resolve().parents[3] / ".cache" / "test-models" / "tiny-export"
PROMPTS = [[5, 17, 33, 2, 40, 41, 9], [60, 7], [11, 12, 13, 14]]  # left-padded to 7
DECODE_STEPS = 6
# fp32 logits of two graphs that sum in a different order (measured: 6e-6 here, logits up to 6)
TOLERANCE = 1e-4


def _export(target: Path) -> None:
    from optimum.exporters.onnx import main_export
    from transformers import AutoTokenizer

    building = target.with_name(target.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    source = build_random_model(building / "source", "tiny", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main_export(
            source, building / "onnx", task="text-generation-with-past",
            library_name="transformers", do_validation=False, local_files_only=True,
        )  # fmt: skip
    AutoTokenizer.from_pretrained(source).save_pretrained(building / "onnx")
    shutil.rmtree(target, ignore_errors=True)
    building.rename(target)


@pytest.fixture(scope="module")
def exported() -> Path:
    """The tiny model as optimum exports it (no fusion at all), cached across runs."""
    if not (EXPORT_CACHE / "onnx" / ONNX_FILE).is_file():
        _export(EXPORT_CACHE)
    return EXPORT_CACHE / "onnx"


@pytest.fixture(scope="module")
def config(exported: Path) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(exported)


@pytest.fixture(scope="module")
def fused(exported: Path, config: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("fused")
    fuse_graph(exported, target, config)
    # what the comparisons below compare: not the fallback, which keeps attention unfused
    assert any(node.op_type == "GroupQueryAttention" for node in load(target).graph.node)
    return target


def load(folder: Path) -> onnx.ModelProto:
    return onnx.load(str(folder / ONNX_FILE))


def session(folder: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(
        str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"]
    )


class Decoder:
    """The engine's protocol on a bare session: left padding, positions from the mask, the
    cache carried from ``present.*`` to ``past_key_values.*``."""

    def __init__(self, folder: Path, config: Any) -> None:
        self.session = session(folder)
        self.layers = config.num_hidden_layers
        self.kv_shape = (
            config.num_key_value_heads,
            config.hidden_size // config.num_attention_heads,
        )
        self.outputs = [output.name for output in self.session.get_outputs()]

    def run(
        self, input_ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: list[Any]
    ) -> tuple[np.ndarray, list[Any]]:
        feeds = {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions}
        for layer, (key, value) in enumerate(past):
            feeds[f"past_key_values.{layer}.key"] = key
            feeds[f"past_key_values.{layer}.value"] = value
        out = dict(zip(self.outputs, self.session.run(None, feeds), strict=True))
        present = [(out[f"present.{i}.key"], out[f"present.{i}.value"]) for i in range(self.layers)]
        return out["logits"][:, -1, :], present

    def empty_past(self, batch: int) -> list[Any]:
        heads, dim = self.kv_shape
        empty = np.zeros((batch, heads, 0, dim), np.float32)
        return [(empty, empty) for _ in range(self.layers)]


def left_padded(prompts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(prompt) for prompt in prompts)
    input_ids = np.zeros((len(prompts), width), np.int64)
    mask = np.zeros((len(prompts), width), np.int64)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt) :] = prompt
        mask[row, width - len(prompt) :] = 1
    return input_ids, mask


def decode_logits(decoder: Decoder, forced: np.ndarray) -> tuple[list[np.ndarray], list[Any]]:
    """Prefill ``PROMPTS`` and decode the tokens ``forced`` gives (``[batch, steps]``): the
    logits of every step and the last cache, the same inputs for any graph."""
    input_ids, mask = left_padded(PROMPTS)
    positions = np.clip(mask.cumsum(-1) - 1, 0, None)
    logits, past = decoder.run(input_ids, mask, positions, decoder.empty_past(len(PROMPTS)))
    steps = [logits]
    for step in range(forced.shape[1]):
        mask = np.concatenate([mask, np.ones((len(PROMPTS), 1), np.int64)], axis=1)
        positions = mask.sum(axis=1, keepdims=True) - 1
        logits, past = decoder.run(forced[:, step : step + 1], mask, positions, past)
        steps.append(logits)
    return steps, past


def test_every_layer_attention_becomes_one_group_query_attention(
    exported: Path, fused: Path, config: Any
) -> None:
    before, after = load(exported), load(fused)
    kinds = [node.op_type for node in after.graph.node]
    assert kinds.count("GroupQueryAttention") == config.num_hidden_layers
    assert "Softmax" not in kinds
    assert len(after.graph.node) < len(before.graph.node) / 2
    # the engine's contract: the same inputs and outputs, the cache in the same shapes
    for ours, theirs in (
        (after.graph.input, before.graph.input),
        (after.graph.output, before.graph.output),
    ):
        assert [v.name for v in ours] == [v.name for v in theirs]
    shapes = {o.name: o.type.tensor_type.shape for o in before.graph.output}
    for output in after.graph.output:
        if output.name.startswith("present."):
            assert output.type.tensor_type.shape == shapes[output.name]


def greedy_tokens(decoder: Decoder) -> np.ndarray:
    """``DECODE_STEPS`` greedy tokens for each of ``PROMPTS``: ``[batch, steps]``."""
    input_ids, mask = left_padded(PROMPTS)
    positions = np.clip(mask.cumsum(-1) - 1, 0, None)
    logits, past = decoder.run(input_ids, mask, positions, decoder.empty_past(len(PROMPTS)))
    tokens = []
    for _ in range(DECODE_STEPS):
        tokens.append(logits.argmax(-1)[:, None])
        mask = np.concatenate([mask, np.ones((len(PROMPTS), 1), np.int64)], axis=1)
        logits, past = decoder.run(tokens[-1], mask, mask.sum(1, keepdims=True) - 1, past)
    return np.concatenate(tokens, axis=1)


def test_fused_logits_equal_unfused_for_left_padded_rows_over_decode_steps(
    exported: Path, fused: Path, config: Any
) -> None:
    unfused, ours = Decoder(exported, config), Decoder(fused, config)
    # the tokens the unfused graph chooses, forced on both so that every step compares
    forced = greedy_tokens(unfused)

    expected, expected_past = decode_logits(unfused, forced)
    actual, actual_past = decode_logits(ours, forced)
    assert len(actual) == DECODE_STEPS + 1
    for step, (theirs, mine) in enumerate(zip(expected, actual, strict=True)):
        np.testing.assert_allclose(
            mine, theirs, rtol=TOLERANCE, atol=TOLERANCE, err_msg=f"step {step}"
        )
    # the cache at real positions (padding columns hold whatever the padding computed)
    _, prompt_mask = left_padded(PROMPTS)
    real = np.concatenate([prompt_mask, np.ones((len(PROMPTS), DECODE_STEPS), np.int64)], axis=1)
    for (their_key, their_value), (my_key, my_value) in zip(
        expected_past, actual_past, strict=True
    ):
        assert my_key.shape == their_key.shape
        for row in range(len(PROMPTS)):
            keep = real[row].astype(bool)
            np.testing.assert_allclose(
                my_key[row][:, keep], their_key[row][:, keep], atol=TOLERANCE
            )
            np.testing.assert_allclose(
                my_value[row][:, keep], their_value[row][:, keep], atol=TOLERANCE
            )


def engine_answers(folder: Path) -> dict[str, tuple[int, ...]]:
    """Rows of different lengths that finish at different steps, and one that joins the running
    batch: the engine's filtering and left-padded concatenation, on ``folder``'s graph."""
    engine = load_onnx_engine(folder, Device.CPU, 0, "tiny")

    def request(name: str, text: str, tokens: int) -> GenerationRequest:
        params = GenerationParams(max_new_tokens=tokens, min_new_tokens=tokens)
        return GenerationRequest(name, [{"role": "user", "content": text}], params)

    done = {r.request_id: r for r in engine.add([
        request("short", "Hi", 3),
        request("long", "Where is my order? I ordered it two weeks ago.", 9),
        request("middle", "What is your refund policy?", 6),
    ])}  # fmt: skip
    for _ in range(2):
        done.update((r.request_id, r) for r in engine.step())
    done.update((r.request_id, r) for r in engine.add([request("joins", "Do you ship?", 5)]))
    while engine.active:
        done.update((r.request_id, r) for r in engine.step())
    return {name: result.token_ids for name, result in done.items()}


def test_the_engine_answers_the_same_with_rows_leaving_and_joining(
    exported: Path, fused: Path
) -> None:
    expected = engine_answers(exported)
    assert sorted(len(tokens) for tokens in expected.values()) == [3, 5, 6, 9]
    assert engine_answers(fused) == expected


def test_a_graph_whose_attention_does_not_match_is_refused_and_left_as_it_was(
    exported: Path, config: Any
) -> None:
    model = load(exported)  # optimum's graph: RoPE is still Mul/Slice/Concat, not fused
    before = model.SerializeToString()
    with pytest.raises(AttentionPatternError, match="expected RotaryEmbedding"):
        fuse_attention(model, config)
    assert model.SerializeToString() == before


def test_a_graph_with_another_number_of_attentions_than_layers_is_refused(
    fused: Path, exported: Path, config: Any, tmp_path: Path
) -> None:
    deeper = config.__class__.from_dict({**config.to_dict(), "num_hidden_layers": 3})
    with pytest.raises(AttentionPatternError, match="2 Softmax nodes for 3 layers"):
        fuse_attention(load(exported), deeper)
    # fuse_graph keeps the transformer fusions' graph then: correct, only not as fast
    fuse_graph(exported, tmp_path, deeper)
    kinds = {node.op_type for node in load(tmp_path).graph.node}
    assert "RotaryEmbedding" in kinds and "GroupQueryAttention" not in kinds


def test_attention_fusion_can_be_left_out(exported: Path, config: Any, tmp_path: Path) -> None:
    """``chatq model build --no-attention-fusion``: for a runtime that cannot run GQA."""
    fuse_graph(exported, tmp_path, config, attention=False)
    kinds = {node.op_type for node in load(tmp_path).graph.node}
    assert "RotaryEmbedding" in kinds and "GroupQueryAttention" not in kinds
