"""``CHATQ_MODEL_VARIANT=auto``: int8 on a CPU with int8 dot products where it is built, fp32
everywhere else; a variant set by name is loaded as set."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from services.worker.engine.variant_choice import choose_variant, cpu_flags, int8_dot_products
from shared.config import Device, ModelVariant, Settings
from shared.model_layout import ModelLayout

VNNI = frozenset({"fpu", "avx2", "avx512f", "avx512_vnni"})
AVX2_ONLY = frozenset({"fpu", "avx2", "fma"})


@pytest.fixture
def x86(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")


def layout_with(tmp_path: Path, *variants: str) -> ModelLayout:
    layout = ModelLayout(tmp_path / "model")
    for variant in variants:
        layout.variant_dir(variant).mkdir(parents=True)
    return layout


@pytest.mark.usefixtures("x86")
def test_auto_runs_int8_on_a_cpu_with_int8_dot_products_where_it_is_built(
    tmp_path: Path,
) -> None:
    settings = Settings(model_variant=ModelVariant.AUTO)
    built = layout_with(tmp_path, "fp32", "int8")
    choice = choose_variant(settings, built, VNNI)
    assert (choice.variant, choice.reason) == ("int8", "auto: the CPU has avx512_vnni")
    assert choose_variant(settings, built, AVX2_ONLY).variant == "fp32"
    assert choose_variant(settings, built, frozenset({"avx_vnni"})).variant == "int8"
    # not built: fp32, and the reason says how to build it
    choice = choose_variant(settings, layout_with(tmp_path / "other", "fp32"), VNNI)
    assert choice.variant == "fp32" and "chatq model build" in choice.reason
    # on CUDA the int8 CPU kernels are not what runs
    cuda = Settings(model_variant=ModelVariant.AUTO, device=Device.CUDA)
    assert choose_variant(cuda, built, VNNI).variant == "fp32"


def test_a_variant_set_by_name_is_loaded_as_set(tmp_path: Path) -> None:
    built = layout_with(tmp_path, "fp32", "int8")
    for variant in (ModelVariant.FP32, ModelVariant.Q4):
        choice = choose_variant(Settings(model_variant=variant), built, VNNI)
        assert (choice.variant, choice.reason) == (variant.value, "CHATQ_MODEL_VARIANT")


def test_auto_is_the_default() -> None:
    assert Settings.model_fields["model_variant"].default is ModelVariant.AUTO


def test_only_x86_counts_its_int8_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert int8_dot_products(VNNI) is None  # not measured on Arm: fp32 there


def test_cpu_flags_come_from_the_first_processor(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu avx2 avx512_vnni\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert cpu_flags(cpuinfo) == frozenset({"fpu", "avx2", "avx512_vnni"})
    assert cpu_flags(tmp_path / "missing") == frozenset()
    cpuinfo.write_text("processor\t: 0\n")
    assert cpu_flags(cpuinfo) == frozenset()
