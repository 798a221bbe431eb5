"""The KV cache written in place (``training/kv_in_place.py``): the edited graph, given a
buffer with room to spare as both past and present, appends each step's key and value where
they belong and gives the very logits of the ordinary call, rows of unequal lengths
included; the graph as exported cannot run that way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from services.worker.engine.kv_in_place import supports_in_place
from shared.model_layout import ModelLayout
from tests.integration.graph_edits import undo_kv_in_place
from training.kv_in_place import (
    KvInPlaceError,
    is_in_place_ready,
    step_in_place,
    take_past_length_from_mask,
)

pytestmark = pytest.mark.integration

ROOM = 8


def session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def built_graph(tiny_model_dir: Path) -> Path:
    """The tiny model as ``chatq model build`` leaves it: edited, with the session metadata."""
    path = ModelLayout(tiny_model_dir).onnx_dir / "model.onnx"
    model = onnx.load(str(path))
    assert is_in_place_ready(model.graph)
    assert take_past_length_from_mask(model) == 0  # once is enough
    assert supports_in_place(session(path))
    return path


def as_exported(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The built graph with the past length read off the cache's shape again, as exported."""
    model = onnx.load(str(ModelLayout(tiny_model_dir).onnx_dir / "model.onnx"))
    undo_kv_in_place(model)
    target = tmp_path / "model.onnx"
    onnx.save(model, str(target))
    return target


def prefill(runner: onnxruntime.InferenceSession) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Two left-padded prompts of 5 and 3 tokens: the cache, and the mask."""
    ids = np.array([[5, 6, 7, 8, 9], [0, 0, 11, 12, 13]], dtype=np.int64)
    mask = np.array([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(1) - 1).clip(0)}
    for item in runner.get_inputs():
        if item.name.startswith("past_key_values."):
            heads, head_dim = item.shape[1], item.shape[3]
            feeds[item.name] = np.zeros((2, heads, 0, head_dim), dtype=np.float32)
    names = [output.name for output in runner.get_outputs()]
    outputs = dict(zip(names, runner.run(None, feeds), strict=True))
    cache = {
        name.replace("present.", "past_key_values.", 1): value
        for name, value in outputs.items()
        if name.startswith("present.")
    }
    return cache, mask


def step_feeds(mask: np.ndarray, token: int) -> dict[str, np.ndarray]:
    return {
        "input_ids": np.full((2, 1), token, dtype=np.int64),
        "attention_mask": mask,
        "position_ids": mask.sum(1, keepdims=True) - 1,
    }


def test_the_built_graph_appends_in_place_and_gives_the_same_logits(
    tiny_model_dir: Path,
) -> None:
    runner = session(built_graph(tiny_model_dir))
    cache, mask = prefill(runner)
    width = mask.shape[1]
    buffers = {}
    for name, value in cache.items():
        room = np.zeros((*value.shape[:2], width + ROOM, value.shape[3]), dtype=np.float32)
        room[:, :, :width] = value
        buffers[name] = onnxruntime.OrtValue.ortvalue_from_numpy(room)
    names = [output.name for output in runner.get_outputs()]
    for step in range(ROOM):
        mask = np.concatenate([mask, np.ones((2, 1), dtype=np.int64)], axis=1)
        feeds = step_feeds(mask, 20 + step)
        ordinary = dict(zip(names, runner.run(None, {**feeds, **cache}), strict=True))
        in_place = step_in_place(runner, feeds, buffers)
        np.testing.assert_allclose(in_place, ordinary["logits"], rtol=1e-5, atol=1e-5)
        cache = {
            name.replace("present.", "past_key_values.", 1): value
            for name, value in ordinary.items()
            if name.startswith("present.")
        }
        # what the ordinary call returned as a new tensor sits in the buffer, in place
        for name, value in cache.items():
            np.testing.assert_allclose(
                buffers[name].numpy()[:, :, : value.shape[2]], value, rtol=1e-5, atol=1e-5
            )


def test_the_exported_graph_cannot_take_a_buffer_with_room(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    runner = session(as_exported(tiny_model_dir, tmp_path))
    cache, mask = prefill(runner)
    buffers = {}
    for name, value in cache.items():
        room = np.zeros((*value.shape[:2], mask.shape[1] + ROOM, value.shape[3]), np.float32)
        buffers[name] = onnxruntime.OrtValue.ortvalue_from_numpy(room)
    mask = np.concatenate([mask, np.ones((2, 1), dtype=np.int64)], axis=1)
    with pytest.raises(Exception, match="out of data bounds"):
        step_in_place(runner, step_feeds(mask, 20), buffers)


def test_a_graph_without_the_expected_shape_reading_is_refused_unchanged() -> None:
    graph = onnx.helper.make_graph([], "empty", [], [])
    model = onnx.helper.make_model(graph)
    with pytest.raises(KvInPlaceError):
        take_past_length_from_mask(model)
    assert len(model.graph.node) == 0
