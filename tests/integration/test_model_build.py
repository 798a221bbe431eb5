"""``chatq model build`` makes the prefill compute the last position's logits only, and a model
built before that keeps working and is upgraded in place by the next build (tiny model, built
from a config here, no download)."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import onnx
import pytest

from services.worker.engine import GenerationRequest, load_engine, variant_choice
from services.worker.engine.kv_in_place import InPlaceStepModel
from services.worker.engine.onnx_runtime import computes_last_position_only, load_onnx_engine
from shared.config import Device, ModelVariant, Settings
from shared.messaging.schemas import GenerationParams
from shared.model_layout import ModelLayout
from tests.integration.graph_edits import undo_kv_in_place
from training.kv_in_place import is_in_place_ready
from training.model_build import ModelSource, build_model
from training.prefill_logits import LOGITS, SLICE_NODE, keeps_last_position_only
from training.random_model import build_random_model
from training.variants import Quantization

QUESTIONS = ["Hi", "Where is my order? I ordered it two weeks ago and nothing has arrived yet."]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelSource, Path]:
    root = tmp_path_factory.mktemp("build")
    source = ModelSource.from_folder(build_random_model(root / "source", "tiny", seed=0))
    build_model(source, root / "model", progress=False)
    return source, root / "model"


def graph(model_dir: Path) -> onnx.ModelProto:
    return onnx.load(str(ModelLayout(model_dir).onnx_dir / "model.onnx"))


def as_built_before_the_edit(model_dir: Path) -> None:
    """Undo the edits: lm_head reads every position again, and the past length comes from the
    cache's shape, as optimum exported it."""
    path = ModelLayout(model_dir).onnx_dir / "model.onnx"
    model = onnx.load(str(path))
    edit = next(n for n in model.graph.node if n.name == SLICE_NODE)
    hidden, *constants = edit.input
    sliced = edit.output[0]
    model.graph.node.remove(edit)
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == sliced:
                node.input[i] = hidden
    for initializer in [i for i in model.graph.initializer if i.name in constants]:
        model.graph.initializer.remove(initializer)
    output = next(o for o in model.graph.output if o.name == LOGITS)
    output.type.tensor_type.shape.dim[1].dim_param = "sequence_length"
    undo_kv_in_place(model)
    onnx.save_model(model, str(path))


def answers(model_dir: Path) -> list[tuple[int, ...]]:
    return answers_of(ModelLayout(model_dir).onnx_dir)


def answers_of(onnx_dir: Path) -> list[tuple[int, ...]]:
    engine = load_onnx_engine(onnx_dir, Device.CPU, 0, "tiny")
    params = GenerationParams(max_new_tokens=12, min_new_tokens=12)
    work = [
        GenerationRequest(str(i), [{"role": "user", "content": q}], params)
        for i, q in enumerate(QUESTIONS)
    ]
    return [result.token_ids for result in engine.generate(work)]


def test_a_new_build_computes_the_prefill_logits_of_the_last_position_only(
    built: tuple[ModelSource, Path],
) -> None:
    _source, model_dir = built
    assert keeps_last_position_only(graph(model_dir))
    manifest = ModelLayout(model_dir).require_manifest()
    assert manifest.parity.identical  # the same greedy tokens as PyTorch
    engine = load_onnx_engine(ModelLayout(model_dir).onnx_dir, Device.CPU, 0, "tiny")
    assert computes_last_position_only(engine.step_model.model)


def test_a_model_built_before_the_edit_still_answers_and_the_next_build_upgrades_it(
    built: tuple[ModelSource, Path], tmp_path: Path
) -> None:
    source, model_dir = built
    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    as_built_before_the_edit(old)
    assert not keeps_last_position_only(graph(old))
    assert not is_in_place_ready(graph(old).graph)
    before = answers(old)
    assert before == answers(model_dir)  # the engine takes the last position either way

    manifest = build_model(source, old, progress=False)
    assert keeps_last_position_only(graph(old))
    assert is_in_place_ready(graph(old).graph)
    assert manifest.parity.identical
    assert ModelLayout(old).require_manifest().parity.identical
    assert answers(old) == before


def test_the_q4_variant_of_a_q4_1_model_answers_exactly_as_fp32_and_int8_is_8_bit_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the default model's MatMul weights are de-quantised Q4_1; so are this tiny model's
    source = build_random_model(tmp_path / "source", "tiny", seed=1)
    _snap_linear_weights_to_q4_1(source)
    target = tmp_path / "model"
    manifest = build_model(
        ModelSource.from_folder(source),
        target,
        quantizations=(Quantization.Q4, Quantization.INT8),
        progress=False,
    )
    # int8: every projection and the output projection as 8-bit blocks; judged like q4
    int8 = manifest.variants["int8"]
    assert int8.prompts == manifest.variants["q4"].prompts and 0 <= int8.token_agreement <= 1
    int8_dir = ModelLayout(target).variant_dir("int8")
    assert _int8_blocks(int8_dir) == 2 * 7 + 1
    engine = load_onnx_engine(int8_dir, Device.CPU, 0, "tiny")
    assert isinstance(engine.step_model, InPlaceStepModel)
    # CHATQ_MODEL_VARIANT=auto: the worker runs it on a CPU with int8 dot products only
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    auto = Settings(model_dir=target, model_variant=ModelVariant.AUTO)
    for flags, variant in (({"avx2", "avx512_vnni"}, "int8"), ({"avx2"}, "fp32")):
        monkeypatch.setattr(variant_choice, "cpu_flags", lambda flags=flags: frozenset(flags))
        assert load_engine(auto).info.variant == variant
    # an int8 of an earlier recipe is rebuilt by the next build: dynamic quantisation (before
    # session 13), 8-bit blocks with the output projection fp32 (sessions 13-17)
    for earlier in (_quantize_dynamically, _blocks_but_the_output_projection):
        earlier(ModelLayout(target).onnx_dir, int8_dir)
        build_model(
            ModelSource.from_folder(source),
            target,
            quantizations=(Quantization.INT8,),
            progress=False,
        )
        assert _int8_blocks(int8_dir) == 2 * 7 + 1
    q4 = manifest.variants["q4"]
    assert q4.token_agreement == 1.0
    assert q4.identical_sequences == q4.prompts
    q4_graph = onnx.load(str(ModelLayout(target).variant_dir("q4") / "model.onnx"))
    assert sum(node.op_type == "MatMulNBits" for node in q4_graph.graph.node) == 2 * 7  # 2 layers
    # the engine decodes both with the KV cache in place, to the same answers
    folders = (ModelLayout(target).onnx_dir, ModelLayout(target).variant_dir("q4"))
    for folder in folders:
        engine = load_onnx_engine(folder, Device.CPU, 0, "tiny")
        assert isinstance(engine.step_model, InPlaceStepModel)
    assert answers_of(folders[0]) == answers_of(folders[1])


def _int8_blocks(folder: Path) -> int:
    """How many 8-bit MatMulNBits the int8 graph has, checking that nothing of an earlier
    recipe is left: no dynamic quantisation, no fp32 output projection."""
    graph = onnx.load(str(folder / "model.onnx")).graph
    assert "DynamicQuantizeLinear" not in {n.op_type for n in graph.node}
    assert not [n for n in graph.node if n.op_type == "MatMul" and LOGITS in n.output]
    blocks = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert all(
        onnx.helper.get_attribute_value(a) == 8
        for n in blocks
        for a in n.attribute
        if a.name == "bits"
    )
    return len(blocks)


def _blocks_but_the_output_projection(fp32: Path, variant: Path) -> None:
    """Overwrite ``variant``'s graph with the int8 recipe of sessions 13-17."""
    from training.block_q8 import rewrite_matmuls
    from training.variants import lm_head_nodes

    model = onnx.load(str(fp32 / "model.onnx"))
    rewrite_matmuls(model, keep=set(lm_head_nodes(model)))
    onnx.save_model(model, str(variant / "model.onnx"))


def _quantize_dynamically(fp32: Path, variant: Path) -> None:
    """Overwrite ``variant``'s graph with the int8 recipe before session 13."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32 / "model.onnx"),
        str(variant / "model.onnx"),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def _snap_linear_weights_to_q4_1(folder: Path) -> None:
    """Round every projection weight to ggml's Q4_1 grid: blocks of 32 inputs, 16 levels from
    the block's minimum to its maximum."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name != "lm_head":
                out_features, in_features = module.weight.shape
                blocks = module.weight.reshape(out_features, in_features // 32, 32)
                low = blocks.min(dim=-1, keepdim=True).values
                step = (blocks.max(dim=-1, keepdim=True).values - low) / 15
                snapped = torch.round((blocks - low) / step) * step + low
                module.weight.copy_(snapped.reshape(out_features, in_features))
    model.save_pretrained(folder)
