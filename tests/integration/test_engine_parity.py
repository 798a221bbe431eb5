"""ONNX Runtime and the PyTorch reference give identical greedy tokens (tiny model, built from a
config in the test, no download)."""

from pathlib import Path

import pytest

from services.worker.engine import GenerationRequest
from services.worker.engine.kv_in_place import InPlaceStepModel
from services.worker.engine.onnx_runtime import computes_last_position_only, load_onnx_engine
from services.worker.engine.pytorch import load_pytorch_engine
from shared.config import Device
from shared.messaging.schemas import GenerationParams
from shared.model_layout import ModelLayout

QUESTIONS = [
    "How do I reset my router?",
    "What is your refund policy?",
    "Where is my order? I ordered it two weeks ago and nothing has arrived yet.",
    "Hi",
]


@pytest.fixture(scope="module")
def engines(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    layout = ModelLayout(tiny_model_dir)
    onnx = load_onnx_engine(layout.onnx_dir, Device.CPU, 0, "tiny")
    torch = load_pytorch_engine(layout.pytorch_dir, Device.CPU, 0, "tiny")
    return onnx, torch


def requests(max_new_tokens: int) -> list[GenerationRequest]:
    params = GenerationParams(max_new_tokens=max_new_tokens)
    return [
        GenerationRequest(str(i), [{"role": "user", "content": q}], params)
        for i, q in enumerate(QUESTIONS)
    ]


def test_greedy_tokens_are_identical_in_a_batch_of_different_lengths(engines) -> None:  # type: ignore[no-untyped-def]
    onnx, torch = engines
    onnx_results = onnx.generate(requests(24))
    torch_results = torch.generate(requests(24))
    assert [r.text for r in onnx_results] == [r.text for r in torch_results]
    assert [r.completion_tokens for r in onnx_results] == [
        r.completion_tokens for r in torch_results
    ]
    assert all(r.completion_tokens > 0 for r in onnx_results)


def test_a_request_alone_gets_the_same_tokens_as_in_a_batch(engines) -> None:  # type: ignore[no-untyped-def]
    onnx, _torch = engines
    batched = onnx.generate(requests(16))
    alone = [onnx.generate([request])[0] for request in requests(16)]
    assert [r.text for r in alone] == [r.text for r in batched]


def test_both_engines_compute_the_prefill_logits_of_the_last_position_only(engines) -> None:  # type: ignore[no-untyped-def]
    onnx, torch = engines
    assert computes_last_position_only(onnx.step_model.model)  # the built graph's edit
    assert torch.model._supports_logits_to_keep()  # generate() then asks for one position


def test_the_onnx_engine_reports_the_providers_its_session_really_got(engines) -> None:  # type: ignore[no-untyped-def]
    onnx, torch = engines
    assert onnx.info.name == "onnxruntime"
    assert onnx.info.providers[0] == "CPUExecutionProvider"
    assert torch.info.providers == ["torch:cpu"]


def test_results_come_back_in_request_order_when_parameters_differ(engines) -> None:  # type: ignore[no-untyped-def]
    onnx, _torch = engines

    def hi(request_id: str, max_new_tokens: int) -> GenerationRequest:
        params = GenerationParams(max_new_tokens=max_new_tokens)
        return GenerationRequest(request_id, [{"role": "user", "content": "Hi"}], params)

    mixed = [hi("a", 3), hi("b", 9), hi("c", 3)]
    results = onnx.generate(mixed)
    assert [r.request_id for r in results] == ["a", "b", "c"]
    assert [r.completion_tokens <= n for r, n in zip(results, (3, 9, 3), strict=True)] == [True] * 3
    assert results[0].text == results[2].text


def test_the_onnx_engine_decodes_in_place_and_copies_the_cache_only_when_rows_change(
    engines,
) -> None:  # type: ignore[no-untyped-def]
    onnx, torch = engines
    step_model = onnx.step_model
    assert isinstance(step_model, InPlaceStepModel)  # the built graph takes a buffer
    steps_before, buffers_before = step_model.in_place_steps, step_model.buffers_made
    # continuous batching: two requests start, two more join three steps later
    first, later = requests(24)[:2], requests(24)[2:]
    results = onnx.add(first)
    for _ in range(3):
        results += onnx.step()
    results += onnx.add(later)
    while onnx.active:
        results += onnx.step()
    texts = {result.request_id: result.text for result in results}
    expected = torch.generate(requests(24))
    assert [texts[result.request_id] for result in expected] == [r.text for r in expected]
    steps = step_model.in_place_steps - steps_before
    copies = step_model.buffers_made - buffers_before
    assert steps >= 20
    # a new slab per layer's key and value when the batch is made, when it outgrows its slab
    # (a joining prompt longer than the running rows) and when the longest prompt leaves
    # (its padding trimmed), not one per step
    per_change = 2 * step_model.layers
    assert copies % per_change == 0 and copies // per_change <= 3


def test_rows_leave_and_join_within_the_slab_and_answer_as_alone(engines) -> None:  # type: ignore[no-untyped-def]
    onnx, _torch = engines
    step_model = onnx.step_model
    lengths = {"0": 5, "1": 20, "2": 9, "3": 14, "4": 7, "5": 11}

    def request(request_id: str) -> GenerationRequest:
        params = GenerationParams(
            max_new_tokens=lengths[request_id], min_new_tokens=lengths[request_id]
        )
        question = QUESTIONS[int(request_id) % 2]  # the two shortest: a joiner fits the slab
        return GenerationRequest(request_id, [{"role": "user", "content": question}], params)

    alone = {rid: onnx.generate([request(rid)])[0].text for rid in lengths}
    buffers_before = step_model.buffers_made
    results = onnx.add([request(rid) for rid in ("0", "1", "2", "3")])
    for step in range(18):
        results += onnx.step()
        if step == 6:  # rows 0 has left (5 tokens): two join, into its place and a spare row
            results += onnx.add([request("4"), request("5")])
    while onnx.active:
        results += onnx.step()
    assert {r.request_id: r.text for r in results} == alone
    assert all(r.completion_tokens == lengths[r.request_id] for r in results)
    # one slab when the batch first stepped; rows then left and joined without copies
    assert step_model.buffers_made - buffers_before == 2 * step_model.layers
