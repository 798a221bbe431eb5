"""The production engine: the exported ONNX model on ONNX Runtime (CUDA or CPU)."""

from __future__ import annotations

from pathlib import Path

import onnxruntime
from optimum.onnxruntime import ORTModelForCausalLM
from transformers import AutoTokenizer

from services.worker.engine.hf_generate import HFGenerateEngine
from shared.config import Device
from shared.logs import get_logger
from shared.messaging.schemas import EngineInfo

log = get_logger(__name__)

PROVIDERS = {Device.CPU: "CPUExecutionProvider", Device.CUDA: "CUDAExecutionProvider"}


class ProviderUnavailableError(RuntimeError):
    pass


def session_options(intra_op_threads: int) -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    return options


def load_onnx_engine(
    onnx_dir: Path, device: Device, intra_op_threads: int, model_name: str
) -> HFGenerateEngine:
    wanted = PROVIDERS[device]
    model = ORTModelForCausalLM.from_pretrained(
        onnx_dir,
        provider=wanted,
        session_options=session_options(intra_op_threads),
        use_cache=True,
        # IO binding keeps inputs, outputs and the KV cache on the GPU between decode steps.
        use_io_binding=device is Device.CUDA,
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
    tokenizer = AutoTokenizer.from_pretrained(onnx_dir, local_files_only=True)
    info = EngineInfo(name="onnxruntime", providers=providers, model=model_name)
    return HFGenerateEngine(model, tokenizer, info)
