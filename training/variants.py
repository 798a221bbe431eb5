"""Faster forms of an exported model, each judged by how often it gives fp32's greedy tokens.

- graph fusion (always tried): ONNX Runtime's transformer optimizer fuses rotary embeddings and
  residual + RMSNorm into single kernels, and each layer's attention becomes one
  GroupQueryAttention kernel (``attention_fusion``; ``chatq model build --no-attention-fusion``
  leaves it out). Kept only if the greedy tokens stay identical.
- ``int8``: every MatMul weight, the output projection (``lm_head``) included, as 8-bit blocks
  of 32, with the activations quantised to int8 per block at run time (``block_q8``). For CPUs
  with int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI): 1.8x fp32 at batch 1 there.
  (Dynamic quantisation, one scale per activation tensor, changed this model's answers from
  the first token; ``bench/quantization.py`` compares the recipes.)
- ``q4``: every MatMul weight as 4-bit blocks of 32 (``block_q4``). The default model's weights
  come from a Q4_1 GGUF and sit on exactly such a grid, so for it this variant is lossless
  (identical tokens) at 40 % of the file size; for other weights it is plain rounding. For CPUs.
- ``fp16``: every float tensor in half precision, inputs, outputs and KV cache included. For
  CUDA (IO binding keeps the fp16 cache on the GPU); CPUs run it slowly, if at all.

Quantisation is judged by token agreement with fp32 on a fixed prompt set, not by speed alone:
a 135M-parameter model is sensitive: even 8-bit weights with fp32 arithmetic change some answers.
"""

from __future__ import annotations

import shutil
import warnings
from enum import StrEnum
from pathlib import Path
from typing import Any

from shared.logs import get_logger
from shared.model_layout import TokenAgreement

log = get_logger(__name__)

ONNX_FILE = "model.onnx"

# The prompt set every variant is judged on (greedy, a fixed number of new tokens).
AGREEMENT_PROMPTS = (
    "How do I reset my router?",
    "What is your refund policy?",
    "Where is my order?",
    "Can I change my delivery address?",
    "Do you ship to Norway?",
    "How do I cancel my subscription?",
    "My package arrived damaged, what should I do?",
    "What payment methods do you accept?",
)
AGREEMENT_NEW_TOKENS = 32


class Quantization(StrEnum):
    INT8 = "int8"
    Q4 = "q4"
    FP16 = "fp16"


def copy_model_folder(source: Path, target: Path, onnx_model: Any) -> None:
    """``target`` = ``source``'s config and tokenizer files + ``onnx_model`` as model.onnx."""
    import onnx

    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file() and not path.name.startswith(ONNX_FILE):
            shutil.copy2(path, target / path.name)
    large = onnx_model.ByteSize() > 1_800_000_000  # protobuf's 2 GB ceiling
    onnx.save_model(
        onnx_model, str(target / ONNX_FILE), save_as_external_data=large,
        all_tensors_to_one_file=True, location=ONNX_FILE + "_data",
    )  # fmt: skip


def fuse_graph(source: Path, target: Path, config: Any, *, attention: bool = True) -> None:
    """ONNX Runtime's transformer fusions for decoder-only models with RoPE and RMSNorm, then
    each layer's attention as one GroupQueryAttention kernel (``attention_fusion``; ORT's
    optimizer leaves attention unfused). A graph whose attention that edit does not recognise
    keeps the transformer fusions alone."""
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    from training.attention_fusion import AttentionPatternError, fuse_attention

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimized = optimize_model(
            str(source / ONNX_FILE),
            model_type="qwen3",  # ORT's decoder-only (RoPE, GQA, RMSNorm) fusion set
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            opt_level=0,  # graph fusions only; the session applies its own optimisations
        )
    fused = optimized.get_fused_operator_statistics()
    model = optimized.model
    if attention:
        try:
            model = fuse_attention(model, config)
            fused["GroupQueryAttention"] = config.num_hidden_layers
        except AttentionPatternError as error:
            # correct as it is, only slower: ~1/3 of a CPU decode step is unfused attention
            log.warning("attention_not_fused", reason=str(error))
    log.info("graph_fused", **{k: v for k, v in fused.items() if v})
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        # the fused kernels live in ONNX Runtime's contrib domain; tools need it declared
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    copy_model_folder(source, target, model)


def lm_head_nodes(model: Any) -> list[str]:
    """The MatMul that computes the logits (the output projection)."""
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and "logits" in n.output]


def quantize(source: Path, target: Path, quantization: Quantization) -> None:
    import onnx

    model = onnx.load(str(source / ONNX_FILE))
    if quantization is Quantization.INT8:
        from training.block_q8 import own_transposed_weights
        from training.block_q8 import rewrite_matmuls as rewrite_as_8_bit_blocks

        own_transposed_weights(model, set(lm_head_nodes(model)))
        rewritten = rewrite_as_8_bit_blocks(model)
        log.info("int8_blocks", matmuls=rewritten)
        copy_model_folder(source, target, model)
    elif quantization is Quantization.Q4:
        from training.block_q4 import rewrite_matmuls

        rewritten, exact = rewrite_matmuls(model)
        log.info("q4_blocks", matmuls=rewritten, exactly_representable=exact)
        copy_model_folder(source, target, model)
    else:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            half = convert_float_to_float16(model, keep_io_types=False, disable_shape_infer=True)
        copy_model_folder(source, target, half)


def built_by_an_earlier_recipe(folder: Path, quantization: Quantization) -> bool:
    """Whether the variant in ``folder`` was built by a recipe this version replaced: an
    ``int8`` of dynamic quantisation (before session 13's 8-bit blocks) or with an fp32
    ``lm_head`` (before session 18) is rebuilt by the next build."""
    import onnx

    if quantization is not Quantization.INT8 or not (folder / ONNX_FILE).is_file():
        return False
    model = onnx.load(str(folder / ONNX_FILE), load_external_data=False)
    return bool(lm_head_nodes(model)) or any(
        node.op_type == "DynamicQuantizeLinear" for node in model.graph.node
    )


def greedy_tokens(
    model: Any, tokenizer: Any, prompts: tuple[str, ...], new_tokens: int
) -> list[list[int]]:
    """Exactly ``new_tokens`` greedy tokens for each prompt, as one left-padded batch."""
    import torch

    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        for text in prompts
    ]
    batch = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(
            **batch,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id,
        )
    return output[:, batch["input_ids"].shape[1] :].tolist()


def agreement(reference: list[list[int]], candidate: list[list[int]]) -> TokenAgreement:
    positions = sum(len(row) for row in reference)
    same = sum(
        a == b
        for ref, cand in zip(reference, candidate, strict=True)
        for a, b in zip(ref, cand, strict=True)
    )
    return TokenAgreement(
        token_agreement=round(same / positions, 4) if positions else 1.0,
        identical_sequences=sum(r == c for r, c in zip(reference, candidate, strict=True)),
        prompts=len(reference),
        new_tokens=len(reference[0]) if reference else 0,
    )
