"""The reference engine: the same model in PyTorch eager mode.

Benchmarks and parity tests compare ONNX Runtime against it; it can also serve
(``CHATQ_ENGINE=torch``) where ONNX Runtime is not wanted.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from services.worker.engine.hf_generate import HFGenerateEngine
from shared.config import Device
from shared.logs import get_logger
from shared.messaging.schemas import EngineInfo

log = get_logger(__name__)


def load_pytorch_engine(
    pytorch_dir: Path,
    device: Device,
    intra_op_threads: int,
    model_name: str,
    dtype: torch.dtype = torch.float32,
) -> HFGenerateEngine:
    if intra_op_threads:
        torch.set_num_threads(intra_op_threads)
    torch_device = torch.device("cuda" if device is Device.CUDA else "cpu")
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CHATQ_DEVICE=cuda, but PyTorch sees no CUDA device.")
    model = AutoModelForCausalLM.from_pretrained(pytorch_dir, dtype=dtype, local_files_only=True)
    # transformers decorates `to` with functools.wraps, whose typeshed type is not bound as a
    # method: mypy takes the device for `self`
    model.to(torch_device).eval()  # type: ignore[arg-type]
    tokenizer = AutoTokenizer.from_pretrained(pytorch_dir, local_files_only=True)
    providers = [f"torch:{torch_device.type}"]
    log.info("engine_loaded", engine="pytorch", providers=providers, model_dir=str(pytorch_dir))
    info = EngineInfo(name="pytorch", providers=providers, model=model_name)
    return HFGenerateEngine(model, tokenizer, info)
