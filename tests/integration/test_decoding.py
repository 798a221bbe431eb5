"""chatq's own decode loop on the tiny model: per-request parameters in one batch, finished
sequences leave, new ones join between steps, and none of it changes a request's tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from prometheus_client import REGISTRY

from services.worker.engine import GenerationRequest
from services.worker.engine.onnx_runtime import OnnxRuntimeEngine, load_onnx_engine
from shared.config import Device
from shared.messaging.schemas import GenerationParams
from shared.model_layout import ModelLayout


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> OnnxRuntimeEngine:
    return load_onnx_engine(ModelLayout(tiny_model_dir).onnx_dir, Device.CPU, 0, "tiny")


@pytest.fixture(scope="module")
def bound_engine(tiny_model_dir: Path) -> OnnxRuntimeEngine:
    """IO binding, as on CUDA: the runtime writes into buffers optimum allocates from the
    graph's declared output shapes, and the KV cache comes back as those buffers."""
    onnx_dir = ModelLayout(tiny_model_dir).onnx_dir
    return load_onnx_engine(onnx_dir, Device.CPU, 0, "tiny", use_io_binding=True)


def ask(request_id: str, question: str, **params: object) -> GenerationRequest:
    settings = {"max_new_tokens": 12, **params}
    return GenerationRequest(
        request_id, [{"role": "user", "content": question}], GenerationParams(**settings)
    )


def alone(engine: OnnxRuntimeEngine, request: GenerationRequest) -> str:
    return engine.generate([request])[0].text


def test_requests_with_different_parameters_share_a_batch(engine: OnnxRuntimeEngine) -> None:
    greedy = ask("greedy", "Where is my order?")
    seeded = ask("seeded", "Where is my order?", temperature=0.9, top_p=0.9, seed=7)
    short = ask("short", "Hi", max_new_tokens=2)
    results = {r.request_id: r for r in engine.generate([greedy, seeded, short])}
    assert results["greedy"].text == alone(engine, greedy)
    assert results["seeded"].text == alone(engine, seeded)  # its own generator, its own draws
    assert results["short"].completion_tokens <= 2
    assert results["greedy"].batch_size == 3


def test_a_different_seed_samples_differently(engine: OnnxRuntimeEngine) -> None:
    def sampled(seed: int) -> GenerationRequest:
        return ask("s", "Tell me about refunds", temperature=1.5, seed=seed, max_new_tokens=16)

    texts = {alone(engine, sampled(seed)) for seed in range(4)}
    assert len(texts) > 1


def test_finished_sequences_leave_the_batch(engine: OnnxRuntimeEngine) -> None:
    engine.add([ask("long", "Where is my order?", max_new_tokens=10, min_new_tokens=10),
                ask("short", "Hi", max_new_tokens=3, min_new_tokens=3)])  # fmt: skip
    sizes, finished = [], []
    while engine.active:
        sizes.append(engine.active)
        finished += [r.request_id for r in engine.step()]
    assert finished == ["short", "long"]
    assert sizes[0] == 2 and sizes[-1] == 1  # the short one stopped costing steps


def test_a_request_joining_a_running_batch_gets_its_own_tokens(engine: OnnxRuntimeEngine) -> None:
    first = ask("first", "What is your refund policy?", max_new_tokens=16, min_new_tokens=16)
    late = ask("late", "Hi", max_new_tokens=8, min_new_tokens=8)
    results = {r.request_id: r for r in engine.add([first])}
    for _ in range(5):
        results.update((r.request_id, r) for r in engine.step())
    results.update((r.request_id, r) for r in engine.add([late]))  # continuous batching
    while engine.active:
        results.update((r.request_id, r) for r in engine.step())
    assert results["first"].text == alone(engine, first)
    assert results["late"].text == alone(engine, late)
    assert results["late"].batch_size == 2


def test_stop_sequences_end_the_answer(engine: OnnxRuntimeEngine) -> None:
    full = alone(engine, ask("full", "Where is my order?", max_new_tokens=24, min_new_tokens=24))
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert stop.strip()
    result = engine.generate([ask("cut", "Where is my order?", max_new_tokens=24, stop=(stop,))])
    assert result[0].finish_reason == "stop"
    assert full.startswith(result[0].text)
    assert stop not in result[0].text


def test_padding_is_measured(engine: OnnxRuntimeEngine) -> None:
    engine.generate([ask("a", "Hi"), ask("b", "Where is my order? It has been two weeks now.")])
    assert 0 < engine.padding_ratio < 1


def test_unequal_lengths_leave_and_join_under_io_binding(
    engine: OnnxRuntimeEngine, bound_engine: OnnxRuntimeEngine
) -> None:
    assert bound_engine.step_model.model.use_io_binding
    work = [
        ask(f"r{i}", "Where is my order? " + "It is late. " * i, max_new_tokens=n, min_new_tokens=n)
        for i, n in enumerate((3, 11, 6, 9))
    ]
    results = {r.request_id: r for r in bound_engine.add(work[:2])}
    for _ in range(4):  # r0 leaves (a filter) while r1 runs on
        results.update((r.request_id, r) for r in bound_engine.step())
    results.update((r.request_id, r) for r in bound_engine.add(work[2:]))  # they join
    while bound_engine.active:
        results.update((r.request_id, r) for r in bound_engine.step())
    assert [results[r.request_id].completion_tokens for r in work] == [3, 11, 6, 9]
    assert [results[r.request_id].text for r in work] == [alone(engine, r) for r in work]


# --- the prefix cache: the system prompt's KV cache kept between jobs ------------------------

SYSTEM = "You are the shop's assistant. Answer briefly and politely, in the customer's language."


def ask_with_system(request_id: str, question: str, **params: object) -> GenerationRequest:
    settings = {"max_new_tokens": 10, "min_new_tokens": 10, **params}
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    return GenerationRequest(request_id, messages, GenerationParams(**settings))


@pytest.fixture(params=[False, True], ids=["plain", "io-binding"])
def cached_engine(tiny_model_dir: Path, request: pytest.FixtureRequest) -> OnnxRuntimeEngine:
    """With the prefix cache; also under IO binding, as on CUDA (the kept prefix is bound as
    the past of the prompt's own tokens)."""
    onnx_dir = ModelLayout(tiny_model_dir).onnx_dir
    return load_onnx_engine(
        onnx_dir, Device.CPU, 0, "tiny", use_io_binding=request.param, prefix_cache_mb=8
    )


def prefix_hits() -> float:
    return REGISTRY.get_sample_value("chatq_prefix_cache_lookups_total", {"result": "hit"}) or 0


QUESTIONS = ("Where is my order?", "Hi", "Can I return a kettle I bought last week?")


def test_prompts_after_a_kept_prefix_get_the_tokens_of_a_full_prefill(
    engine: OnnxRuntimeEngine, cached_engine: OnnxRuntimeEngine
) -> None:
    assert not engine.prefix_cache.enabled
    first = [ask_with_system(f"a{i}", q) for i, q in enumerate(QUESTIONS)]
    assert [r.token_ids for r in cached_engine.generate(first)] == [
        r.token_ids for r in engine.generate(first)
    ]
    assert len(cached_engine.prefix_cache) == 1  # three prompts, one system prompt (seen 3×)
    # each one now prefills after the kept prefix, alone, sampled ones included
    again = [ask_with_system(f"b{i}", q) for i, q in enumerate(QUESTIONS)]
    again.append(ask_with_system("seeded", "Hi", temperature=0.9, top_p=0.9, seed=3))
    hits = prefix_hits()
    assert [r.token_ids for r in cached_engine.generate(again)] == [
        r.token_ids for r in engine.generate(again)
    ]
    assert prefix_hits() - hits == len(again)
    counted = [r.prompt_tokens for r in cached_engine.generate(again[:1])]
    assert counted == [len(engine.prompt_of(again[0]))]  # the whole prompt counts as its prompt


def test_a_prompt_after_a_kept_prefix_joins_a_running_batch(
    engine: OnnxRuntimeEngine, cached_engine: OnnxRuntimeEngine
) -> None:
    cached_engine.generate([ask_with_system("warm", "Hello")])
    running = ask_with_system("running", "Where is my order? It is late.", max_new_tokens=14)
    late = ask_with_system("late", "Hi")
    results = {r.request_id: r for r in cached_engine.add([running])}
    for _ in range(4):
        results.update((r.request_id, r) for r in cached_engine.step())
    results.update((r.request_id, r) for r in cached_engine.add([late]))
    while cached_engine.active:
        results.update((r.request_id, r) for r in cached_engine.step())
    assert results["late"].batch_size == 2
    for request in (running, late):
        assert results[request.request_id].token_ids == engine.generate([request])[0].token_ids


def test_a_row_prefix_from_a_padded_batch_is_the_prefix_computed_alone(
    cached_engine: OnnxRuntimeEngine,
) -> None:
    prompts = [cached_engine.encoded_prompt_of(ask_with_system("x", q)) for q in QUESTIONS]
    assert len({p.shared_prefix for p in prompts}) == 1 and prompts[0].shared_prefix > 0
    assert len({len(p.ids) for p in prompts}) > 1  # rows of unequal length: left padding
    requests = [ask_with_system(str(i), q) for i, q in enumerate(QUESTIONS)]
    padded = cached_engine._prefill([*requests], [p.ids for p in prompts])
    length = prompts[0].shared_prefix
    alone_batch = cached_engine._prefill([requests[0]], [prompts[0].ids[:length]])
    for row in range(len(prompts)):
        kept = padded.row_prefix(row, length)
        for (key, value), (alone_key, alone_value) in zip(kept, alone_batch.past, strict=True):
            assert key.shape == alone_key.shape
            torch.testing.assert_close(key, alone_key, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(value, alone_value, rtol=1e-4, atol=1e-5)


def test_a_prefix_seen_once_is_not_kept(cached_engine: OnnxRuntimeEngine) -> None:
    cached_engine.generate([ask_with_system("once", "Where is my order?")])
    assert len(cached_engine.prefix_cache) == 0
    cached_engine.generate([ask_with_system("twice", "Hi")])
    assert len(cached_engine.prefix_cache) == 1


def test_prompts_without_a_system_prompt_are_not_cached(cached_engine: OnnxRuntimeEngine) -> None:
    cached_engine.generate([ask("p", "Where is my order?"), ask("q", "Hi")])
    assert len(cached_engine.prefix_cache) == 0


def test_a_runtime_that_cannot_continue_after_a_prefix_turns_the_cache_off(
    tiny_model_dir: Path, engine: OnnxRuntimeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = load_onnx_engine(
        ModelLayout(tiny_model_dir).onnx_dir, Device.CPU, 0, "tiny", prefix_cache_mb=8
    )
    cached.generate([ask_with_system("a", "Hi"), ask_with_system("b", "Hello")])
    assert len(cached.prefix_cache) == 1
    forward = cached.step_model.forward

    def refusing_continuations(
        input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, past: object
    ) -> object:
        if past is not None and input_ids.shape[1] > 1:  # as GQA refuses some shapes
            raise RuntimeError("sequence_length > 1 after a past is not supported here")
        return forward(input_ids, mask, positions, past)  # type: ignore[arg-type]

    monkeypatch.setattr(cached.step_model, "forward", refusing_continuations)
    request = ask_with_system("c", "Where is my order?")
    assert cached.generate([request])[0].token_ids == engine.generate([request])[0].token_ids
    assert not cached.prefix_cache.enabled  # not one failed forward per later job
