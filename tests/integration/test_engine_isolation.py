"""One job's parameters or numbers never fail another job (issue 8, hole 1): a sequence that
cannot be sampled fails alone with a reason, and the rest of its batch finishes as if it were not
there. The poisoned requests bypass the API's validation, as a message on the broker can."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from services.worker.engine import GenerationRequest, GenerationResult
from services.worker.engine.decoding import PastKeyValues
from services.worker.engine.hf_generate import HFGenerateEngine
from services.worker.engine.onnx_runtime import (
    OnnxRuntimeEngine,
    OptimumStepModel,
    load_onnx_engine,
)
from services.worker.engine.pytorch import load_pytorch_engine
from services.worker.inference import BatchProcessor
from services.worker.prompt import PromptBuilder
from shared.api_keys import create_api_key
from shared.config import Device, Settings
from shared.db.models import utcnow
from shared.messaging.schemas import GenerationParams, InferenceRequest
from shared.model_layout import ModelLayout
from tests.integration.factories import make_job

# a temperature the API refuses now; it divided the logits into NaN and failed the whole batch
FROZEN = {"temperature": 1e-300, "seed": 3}


@pytest.fixture(scope="module")
def onnx_engine(tiny_model_dir: Path) -> OnnxRuntimeEngine:
    return load_onnx_engine(ModelLayout(tiny_model_dir).onnx_dir, Device.CPU, 0, "tiny")


@pytest.fixture(scope="module")
def torch_engine(tiny_model_dir: Path) -> HFGenerateEngine:
    return load_pytorch_engine(ModelLayout(tiny_model_dir).pytorch_dir, Device.CPU, 0, "tiny")


def ask(request_id: str, question: str, **params: object) -> GenerationRequest:
    settings = {"max_new_tokens": 8, **params}
    return GenerationRequest(
        request_id, [{"role": "user", "content": question}], GenerationParams(**settings)
    )


def by_id(results: list[GenerationResult]) -> dict[str, GenerationResult]:
    return {result.request_id: result for result in results}


def test_an_unsampleable_temperature_fails_alone_on_onnx(onnx_engine: OnnxRuntimeEngine) -> None:
    good = ask("good", "Where is my order?")
    seeded = ask("seeded", "What is your refund policy?", temperature=0.8, seed=5)
    results = by_id(onnx_engine.generate([good, ask("frozen", "Hi", **FROZEN), seeded]))
    frozen = results["frozen"]
    assert frozen.finish_reason == "error"
    assert frozen.error is not None and frozen.error.code == "sampling_failed"
    assert "temperature" in frozen.error.message
    assert results["good"].error is None and results["seeded"].error is None
    assert results["good"].text == onnx_engine.generate([good])[0].text
    assert results["seeded"].text == onnx_engine.generate([seeded])[0].text


class PoisonedStepModel:
    """The real model, except that the prefill of a batch of several gives row 1 NaN scores
    (a numerical failure in one sequence, such as an fp16 overflow)."""

    def __init__(self, inner: OptimumStepModel) -> None:
        self.inner = inner
        self.model = inner.model
        self.cache_rows = inner.cache_rows

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past: PastKeyValues | None,
    ) -> tuple[torch.Tensor, PastKeyValues]:
        logits, cache = self.inner.forward(input_ids, attention_mask, position_ids, past)
        if past is None and logits.shape[0] > 1:
            logits[1] = float("nan")
        return logits, cache


def test_nan_logits_fail_one_sequence_and_the_running_batch_goes_on(
    onnx_engine: OnnxRuntimeEngine,
) -> None:
    poisoned = OnnxRuntimeEngine(
        PoisonedStepModel(onnx_engine.step_model),  # type: ignore[arg-type]
        onnx_engine.tokenizer,
        onnx_engine.info,
    )
    running = ask("running", "What is your refund policy?", max_new_tokens=12, min_new_tokens=12)
    results = by_id(poisoned.add([running]))
    for _ in range(3):
        results.update(by_id(poisoned.step()))
    # two join the running batch; the second of them gets NaN scores at its prefill
    results.update(by_id(poisoned.add([ask("joining", "Hi"), ask("broken", "Hello there")])))
    assert results["broken"].error is not None
    assert results["broken"].error.code == "invalid_logits"
    while poisoned.active:
        results.update(by_id(poisoned.step()))
    assert results["running"].text == onnx_engine.generate([running])[0].text
    assert results["running"].completion_tokens == 12
    assert results["joining"].text == onnx_engine.generate([ask("alone", "Hi")])[0].text


def test_an_unsampleable_temperature_fails_alone_on_pytorch(
    torch_engine: HFGenerateEngine,
) -> None:
    good = ask("good", "Where is my order?")
    other = ask("other", "Hi", max_new_tokens=4)
    results = by_id(torch_engine.generate([good, ask("frozen", "Hi", **FROZEN), other]))
    frozen = results["frozen"]
    assert frozen.finish_reason == "error"
    assert frozen.error is not None and frozen.error.code == "generation_failed"
    assert results["good"].text == torch_engine.generate([good])[0].text
    assert results["other"].text == torch_engine.generate([other])[0].text


def test_a_batch_where_every_sequence_fails_is_the_engines_fault(
    torch_engine: HFGenerateEngine,
) -> None:
    # nothing tells the requests' fault from the engine's: the error goes up and the consumer
    # retries the jobs elsewhere, as for any engine failure
    with pytest.raises(RuntimeError, match="every sequence of the batch failed"):
        torch_engine.generate([ask("a", "Hi", **FROZEN), ask("b", "Hello", **FROZEN)])


def test_a_failed_sequence_ends_its_job_failed_and_the_others_complete(
    backend_settings: Settings, onnx_engine: OnnxRuntimeEngine
) -> None:
    url = backend_settings.database_url
    processor = BatchProcessor(
        onnx_engine, PromptBuilder("Be brief.", 256, onnx_engine.count_prompt_tokens), url
    )
    tenant_a = create_api_key(url, "shop")
    tenant_b = create_api_key(url, "school")
    jobs = {"a": make_job(url, tenant_a.id), "b": make_job(url, tenant_b.id)}
    requests = {
        "a": InferenceRequest(
            job_id=jobs["a"].id,
            query="Where is my order?",
            params=GenerationParams(max_new_tokens=4),
            submitted_at=utcnow(),
        ),
        "b": InferenceRequest(
            job_id=jobs["b"].id,
            query="Where is my order?",
            params=GenerationParams(max_new_tokens=4, **FROZEN),
            submitted_at=utcnow(),
        ),
    }
    prepared = processor.prepare(list(requests.items()))
    admitted = utcnow()
    outcomes = {
        result.request_id: processor.completed(requests[result.request_id], result, admitted)
        for result in onnx_engine.generate(prepared.generation)
    }
    assert outcomes["a"].status == "completed" and outcomes["a"].response is not None
    assert outcomes["b"].status == "failed"
    assert outcomes["b"].error is not None and outcomes["b"].error.code == "sampling_failed"


class FailingStepModel:
    """The real model, except that a prefill holding ``poison_token`` raises (a request the
    runtime cannot take, such as one over a kernel's limits)."""

    def __init__(self, inner: OptimumStepModel, poison_token: int) -> None:
        self.inner = inner
        self.model = inner.model
        self.cache_rows = inner.cache_rows
        self.poison_token = poison_token

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past: PastKeyValues | None,
    ) -> tuple[torch.Tensor, PastKeyValues]:
        if past is None and bool((input_ids == self.poison_token).any()):
            raise RuntimeError("the runtime refused this input")
        return self.inner.forward(input_ids, attention_mask, position_ids, past)


def test_a_request_whose_prefill_raises_fails_alone(onnx_engine: OnnxRuntimeEngine) -> None:
    poison_token = onnx_engine.tokenizer.encode("refund", add_special_tokens=False)[0]
    failing = OnnxRuntimeEngine(
        FailingStepModel(onnx_engine.step_model, poison_token),  # type: ignore[arg-type]
        onnx_engine.tokenizer,
        onnx_engine.info,
    )
    good = ask("good", "Where is my order?")
    results = by_id(failing.generate([good, ask("bad", "refund refund")]))
    assert results["bad"].error is not None
    assert results["bad"].error.code == "generation_failed"
    assert results["good"].text == onnx_engine.generate([good])[0].text
    # alone, nothing tells its fault from the engine's: the error goes up (retried elsewhere)
    with pytest.raises(RuntimeError, match="refused"):
        failing.generate([ask("bad", "refund refund")])
    assert failing.active == 0
