"""Which export of the model a worker runs when ``CHATQ_MODEL_VARIANT=auto`` (the default).

On a CPU with int8 dot-product instructions the ``int8`` variant (8-bit blocks with int8
activations, ``training/block_q8.py``) decodes 1.8x as fast as fp32 at batch 1 and 1.15x at
batch 8, and its answers score as fp32's on the shop's question set (README, Benchmarks). On a
CPU without them the same kernels widen int8 products through int16 and are slower than fp32
at batch 8, so fp32 stays. On CUDA, fp32 (fp16 was never measured on a GPU here). A variant not
built falls back to fp32, said in the log, rather than stopping a worker that can serve.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from shared.config import Device, ModelVariant, Settings
from shared.model_layout import ModelLayout

CPUINFO = Path("/proc/cpuinfo")
# x86 flags (Linux's names) of instructions that multiply int8 and add into int32 in one go:
# AVX-512 VNNI (Cascade Lake and later Xeons, Zen 4), AVX-VNNI (Alder Lake and later, Zen 5),
# AMX (Sapphire Rapids and later). ONNX Runtime's MatMulNBits has int8 kernels for each.
INT8_DOT_PRODUCT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


@dataclass(frozen=True)
class VariantChoice:
    variant: str
    reason: str


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The first processor's feature flags as Linux lists them; none where there is no
    ``/proc/cpuinfo`` (another system) or it cannot be read."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in {"flags", "Features"}:
            return frozenset(value.split())
    return frozenset()


def int8_dot_products(flags: frozenset[str]) -> str | None:
    """The int8 dot-product instruction set among ``flags`` (x86 only: the int8 variant was
    measured on x86), or None."""
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return None
    found = sorted(INT8_DOT_PRODUCT_FLAGS & flags)
    return found[0] if found else None


def choose_variant(
    settings: Settings, layout: ModelLayout, flags: frozenset[str] | None = None
) -> VariantChoice:
    """The variant to load from ``layout``: the one set, or for ``auto`` the fastest built one
    that keeps the answers on this device."""
    if settings.model_variant is not ModelVariant.AUTO:
        return VariantChoice(settings.model_variant.value, "CHATQ_MODEL_VARIANT")
    if settings.device is not Device.CPU:
        return VariantChoice(ModelVariant.FP32.value, f"auto: {settings.device.value}")
    instructions = int8_dot_products(cpu_flags() if flags is None else flags)
    if instructions is None:
        return VariantChoice(ModelVariant.FP32.value, "auto: no int8 dot products on this CPU")
    if not layout.variant_dir(ModelVariant.INT8.value).is_dir():
        return VariantChoice(
            ModelVariant.FP32.value,
            f"auto: the CPU has {instructions}, but no int8 variant is built "
            "(`chatq model build` builds it)",
        )
    return VariantChoice(ModelVariant.INT8.value, f"auto: the CPU has {instructions}")
