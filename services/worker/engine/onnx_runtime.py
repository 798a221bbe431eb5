"""The production engine: the exported ONNX model on ONNX Runtime (CUDA or CPU), decoded by
chatq's own batched loop (``decoding.DecodeBatch``): per-request parameters inside one batch,
finished sequences leave at once, new ones join between steps, and the KV cache of the prompt
prefix jobs share (the system prompt) is kept between them (``prefix_cache``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime
import torch
from optimum.onnxruntime import ORTModelForCausalLM
from transformers import AutoTokenizer

from services.worker.engine.base import (
    Engine,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    stop_token_ids,
)
from services.worker.engine.chat_prompt import EncodedPrompt
from services.worker.engine.decoding import (
    COPIED_ROWS,
    CacheRows,
    DecodeBatch,
    Finisher,
    PaddingStats,
    PastKeyValues,
)
from services.worker.engine.kv_in_place import InPlaceStepModel, supports_in_place
from services.worker.engine.prefix_cache import PrefixCache
from shared.config import Device
from shared.logs import get_logger
from shared.messaging.schemas import EngineInfo

log = get_logger(__name__)

PROVIDERS = {Device.CPU: "CPUExecutionProvider", Device.CUDA: "CUDAExecutionProvider"}


class ProviderUnavailableError(RuntimeError):
    pass


class ModelRunError(RuntimeError):
    """The runtime loaded the graph but cannot run it on this device."""


def session_options(intra_op_threads: int, spinning: bool = False) -> onnxruntime.SessionOptions:
    """``spinning``: whether ONNX Runtime's intra-op threads spin between the parallel parts of
    a step instead of sleeping; either way they stop when the step returns. Beside the API,
    Postgres and post-processing on the same 2 cores a sleeping thread is woken late for each
    part (session 17, the whole pipeline: one job at a time 1.73–1.91 → 2.06–2.46 jobs/s with
    spinning); spinning on past the step (session 7) took the cores from the sampling between
    steps and from the other processes (pipeline overhead +3.5 ms), hence the stop."""
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    # spinning threads stop as soon as a step returns, not after spinning on into the engine's
    # sampling and the other processes' time
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


class OptimumStepModel:
    """One forward pass through optimum's ORTModelForCausalLM.

    On CUDA optimum binds inputs and outputs to device memory (IO binding), so the KV cache
    stays on the GPU between steps; only the last position's logits come back to the host.
    A graph built by ``chatq model build`` computes only those (``[batch, 1, vocab]``); one
    built before that edit computes every position's, and the last is taken here.
    """

    def __init__(self, model: ORTModelForCausalLM) -> None:
        self.model = model
        self.device = model.device
        self.cache_rows: CacheRows = COPIED_ROWS

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past: PastKeyValues | None,
    ) -> tuple[torch.Tensor, PastKeyValues]:
        output = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            position_ids=position_ids.to(self.device),
            past_key_values=past,
            use_cache=True,
        )
        return output.logits[:, -1, :].to("cpu", torch.float32), output.past_key_values


class OnnxRuntimeEngine(Engine):
    def __init__(
        self,
        step_model: OptimumStepModel | InPlaceStepModel,
        tokenizer: Any,
        info: EngineInfo,
        prefix_cache: PrefixCache | None = None,
    ) -> None:
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.step_model = step_model
        self.tokenizer = tokenizer
        self.info = info
        self.finisher = Finisher(tokenizer, stop_token_ids(step_model.model, tokenizer))
        self.padding = PaddingStats()
        self.prefix_cache = prefix_cache if prefix_cache is not None else PrefixCache(0)
        self._batch: DecodeBatch | None = None

    @property
    def active(self) -> int:
        return len(self._batch) if self._batch else 0

    @property
    def padding_ratio(self) -> float:
        return self.padding.ratio

    def add(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Prefill ``requests`` and join them to the running batch. A request whose prompt
        starts with a prefix in the cache prefills only the rest, alone; the others prefill
        together, and their prefixes go into the cache for the next ones."""
        if not requests:
            return []
        joining: list[DecodeBatch] = []
        uncached: list[tuple[GenerationRequest, EncodedPrompt]] = []
        for request in requests:
            encoded = self.encoded_prompt_of(request)
            batch = self._prefill_from_cache(request, encoded)
            if batch is not None:
                joining.append(batch)
            else:
                uncached.append((request, encoded))
        failed: list[GenerationResult] = []
        if uncached:
            failed, prefilled = self._prefill_isolated(
                [request for request, _ in uncached], [encoded.ids for _, encoded in uncached]
            )
            self._keep_prefixes(prefilled, {r.request_id: e for r, e in uncached})
            joining.append(prefilled)
        # the newcomers joined first, so that the running batch's cache is copied once
        results, newcomers = self._collect(_concatenated(joining))
        if newcomers is not None:
            self._batch = (
                newcomers
                if self._batch is None
                else DecodeBatch.concatenate(self._batch, newcomers, self.step_model.cache_rows)
            )
        return failed + results

    def _prefill_from_cache(
        self, request: GenerationRequest, encoded: EncodedPrompt
    ) -> DecodeBatch | None:
        """The request prefilled after its prefix's kept KV cache; None when the cache does not
        hold it (or that prefill failed: the request then prefills in full with the others)."""
        if not self.prefix_cache.enabled:
            return None
        length = self.prefix_cache.usable_prefix(encoded.ids, encoded.shared_prefix)
        past = self.prefix_cache.get(encoded.ids[:length]) if length else None
        if past is None:
            return None
        try:
            with torch.inference_mode():
                return DecodeBatch.prefill_after_prefix(
                    self.step_model, self.finisher, request, encoded.ids, past, self.padding
                )
        except Exception as error:
            # a runtime that cannot continue a prompt after a cache would fail every hit: the
            # cache goes off for this engine, and the prompts prefill in full as before
            log.warning("prefix_cache_disabled", request_id=request.request_id, error=repr(error))
            self.prefix_cache = PrefixCache(0)
            return None

    def _keep_prefixes(self, batch: DecodeBatch, prompts: dict[str, EncodedPrompt]) -> None:
        """Put the shared prefixes of a batch just prefilled into the cache from their second
        sighting on (each row's first tokens' KV cache, as computed within its whole prompt)."""
        if not self.prefix_cache.enabled:
            return
        for row, sequence in enumerate(batch.sequences):
            encoded = prompts[sequence.request.request_id]
            length = self.prefix_cache.usable_prefix(encoded.ids, encoded.shared_prefix)
            prefix = encoded.ids[:length]
            if length and prefix not in self.prefix_cache and self.prefix_cache.seen_before(prefix):
                try:
                    self.prefix_cache.put(prefix, batch.row_prefix(row, length))
                except Exception as error:  # a copy that does not fit: the jobs go on without
                    log.warning("prefix_not_kept", error=repr(error))

    def step(self) -> list[GenerationResult]:
        if self._batch is None:
            return []
        with torch.inference_mode():
            self._batch.step(self.step_model, self.finisher, self.padding)
        results, self._batch = self._collect(self._batch)
        return results

    def abort(self) -> None:
        self._batch = None

    def generated_tokens(self, request_id: str) -> Sequence[int] | None:
        if self._batch is None:
            return None
        for sequence in self._batch.sequences:
            if sequence.request.request_id == request_id:
                return sequence.tokens
        return None

    def _prefill(
        self, requests: Sequence[GenerationRequest], prompts: Sequence[list[int]]
    ) -> DecodeBatch:
        with torch.inference_mode():
            return DecodeBatch.prefill(
                self.step_model, self.finisher, requests, prompts,
                self.tokenizer.pad_token_id, self.padding,
            )  # fmt: skip

    def _prefill_isolated(
        self, requests: list[GenerationRequest], prompts: list[list[int]]
    ) -> tuple[list[GenerationResult], DecodeBatch]:
        """Prefill the joining requests together; if that fails, each alone, so that a request
        the model cannot take fails by itself. If every one fails alone too, the engine is at
        fault, not the requests: the first error goes up (the jobs are retried elsewhere)."""
        try:
            return [], self._prefill(requests, prompts)
        except Exception as group_error:
            if len(requests) == 1:
                raise
            failed: list[GenerationResult] = []
            batches: list[DecodeBatch] = []
            for request, prompt in zip(requests, prompts, strict=True):
                try:
                    batches.append(self._prefill([request], [prompt]))
                except Exception as error:
                    log.warning(
                        "sequence_prefill_failed", request_id=request.request_id, error=repr(error)
                    )
                    failed.append(
                        GenerationResult.failed(
                            request.request_id,
                            GenerationError("generation_failed", f"the model failed: {error}"),
                            len(prompt),
                        )
                    )
            if not batches:
                raise group_error
            return failed, _concatenated(batches)

    def _collect(self, batch: DecodeBatch) -> tuple[list[GenerationResult], DecodeBatch | None]:
        results = [self.finisher.result(sequence) for sequence in batch.finished()]
        if not results:
            return [], batch
        keep = [i for i, s in enumerate(batch.sequences) if s.finish_reason is None]
        return results, batch.filter(keep, self.step_model.cache_rows)


def _concatenated(batches: Sequence[DecodeBatch]) -> DecodeBatch:
    joined = batches[0]
    for batch in batches[1:]:
        joined = DecodeBatch.concatenate(joined, batch)
    return joined


def computes_last_position_only(model: ORTModelForCausalLM) -> bool:
    """Whether the session's ``logits`` are ``[batch, 1, vocab]`` (the prefill edit of
    ``training.prefill_logits``) rather than one row per input position."""
    shape = next(o.shape for o in model.session.get_outputs() if o.name == "logits")
    return len(shape) == 3 and shape[1] == 1


def load_onnx_engine(
    onnx_dir: Path,
    device: Device,
    intra_op_threads: int,
    model_name: str,
    variant: str = "fp32",
    use_io_binding: bool | None = None,
    prefix_cache_mb: int = 0,
    spinning: bool = False,
) -> OnnxRuntimeEngine:
    """``use_io_binding``: None binds on CUDA only (where it keeps inputs, outputs and the KV
    cache on the GPU between decode steps); tests set it to run that path on the CPU.
    ``prefix_cache_mb``: the budget of the shared prompt prefixes' KV cache (0: none)."""
    wanted = PROVIDERS[device]
    model = ORTModelForCausalLM.from_pretrained(
        onnx_dir,
        provider=wanted,
        session_options=session_options(intra_op_threads, spinning),
        use_cache=True,
        use_io_binding=device is Device.CUDA if use_io_binding is None else use_io_binding,
        local_files_only=True,
    )
    # onnxruntime-gpu falls back to the CPU with nothing but a log line: ask the session itself.
    providers = list(model.session.get_providers())
    log.info("engine_loaded", engine="onnxruntime", providers=providers, model_dir=str(onnx_dir))
    if providers[0] != wanted:
        raise ProviderUnavailableError(
            f"CHATQ_DEVICE={device.value} asked for {wanted}, but ONNX Runtime gave {providers}. "
            "Install the gpu extra (onnxruntime-gpu, never beside onnxruntime) and check that "
            "CUDA and cuDNN are visible, or set CHATQ_DEVICE=cpu."
        )
    if not computes_last_position_only(model):
        # still correct, only slower: every prefill multiplies every position by lm_head
        log.warning(
            "model_prefill_computes_every_position",
            model_dir=str(onnx_dir),
            fix="run the `chatq model build` that built it again (same --from and --out): "
            "it adds the last-position edit to the built graph in place",
        )
    tokenizer = AutoTokenizer.from_pretrained(onnx_dir, local_files_only=True)
    info = EngineInfo(name="onnxruntime", providers=providers, model=model_name, variant=variant)
    prefix_cache = PrefixCache(prefix_cache_mb * 1024 * 1024)
    if device is Device.CUDA and _has_fused_attention(onnx_dir):
        raise ModelRunError(
            f"{onnx_dir} has its attention fused into GroupQueryAttention, which ONNX Runtime's "
            "CUDA kernel does not run with the attention bias this graph uses (and runs only in "
            "fp16). Build the model for GPU workers without it: `chatq model build --force "
            "--no-attention-fusion` (same --from; --out a folder for them, their CHATQ_MODEL_DIR)"
        )
    ordinary = OptimumStepModel(model)
    # on the CPU, a graph built to take it appends each decode step to the KV cache in place
    # (not under optimum's IO binding: that path keeps the cache on a GPU, and the tests that
    # bind on the CPU are there to run it)
    step_model: OptimumStepModel | InPlaceStepModel = (
        InPlaceStepModel(ordinary)
        if providers[0] == "CPUExecutionProvider"
        and not model.use_io_binding
        and supports_in_place(model.session)
        else ordinary
    )
    check_runs(step_model, onnx_dir, providers)
    return OnnxRuntimeEngine(step_model, tokenizer, info, prefix_cache)


def check_runs(
    step_model: OptimumStepModel | InPlaceStepModel, onnx_dir: Path, providers: list[str]
) -> None:
    """One token through the model at load (it also warms the session up): a graph this
    runtime cannot run on this device stops the worker's start, not every job it takes.
    ``chatq model build`` fuses attention into GroupQueryAttention, which some ONNX Runtime
    builds (CUDA ones in particular) may not run with the attention bias the fused graph uses;
    the error says how to build without it."""
    one = torch.ones((1, 1), dtype=torch.long)
    try:
        with torch.inference_mode():
            step_model.forward(one, one, torch.zeros((1, 1), dtype=torch.long), None)
    except Exception as error:
        # the fix first: a model switch logs only the start of the message
        hint = (
            "its attention is fused (GroupQueryAttention): rebuild it with `chatq model build "
            "--force --no-attention-fusion` (same --from and --out); "
            if _has_fused_attention(onnx_dir)
            else ""
        )
        raise ModelRunError(
            f"ONNX Runtime {onnxruntime.__version__} ({providers[0]}) cannot run {onnx_dir}: "
            f"{hint}{error}"
        ) from error


def _has_fused_attention(onnx_dir: Path) -> bool:
    """Whether the graph holds GroupQueryAttention nodes (False if it cannot be read)."""
    import onnx  # the graph's proto only here: loading a model for serving never needs it

    try:
        graph = onnx.load(str(onnx_dir / "model.onnx"), load_external_data=False).graph
    except Exception:
        return False
    return any(node.op_type == "GroupQueryAttention" for node in graph.node)
