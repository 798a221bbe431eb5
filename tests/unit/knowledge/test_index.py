"""The hybrid index: cosine and query coverage for every hit, fusion, language handling."""

from __future__ import annotations

import numpy as np
import pytest

from services.worker.knowledge.index import FusionConfig, Hit, HybridIndex, IndexedText
from shared.knowledge.text import lexical_tokens


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


TEXTS = [
    IndexedText("Refunds reach your card within 5 business days.", "en"),
    IndexedText("Order A12345 was shipped by express courier.", "en"),
    IndexedText("退款将在5个工作日内原路退回。", "zh"),
]
VECTORS = np.stack([unit(1, 0, 0), unit(0, 1, 0), unit(0.9, 0, 0.1)])


def test_every_hit_carries_its_cosine_and_its_coverage() -> None:
    index = HybridIndex(TEXTS, VECTORS)
    hits = index.search("refund card", unit(1, 0, 0), k=3)
    assert [h.position for h in hits] == [0, 2, 1]
    assert hits[0] == Hit(0, pytest.approx(hits[0].score), pytest.approx(1.0), 1.0)
    assert hits[1].dense == pytest.approx(float(unit(0.9, 0, 0.1)[0]))
    assert hits[2].lexical == 0.0
    assert len(index) == 3 and index.dim == 3


def test_coverage_is_the_idf_share_of_the_query_found_in_the_text() -> None:
    index = HybridIndex(TEXTS, VECTORS)
    coverage, _ = index.lexical_scores("refund express")
    # "refund" (only in text 0) and "express" (only in text 1) are equally rare.
    assert coverage[0] == pytest.approx(0.5)
    assert coverage[1] == pytest.approx(0.5)
    assert coverage[2] == 0.0


def test_a_query_token_found_nowhere_lowers_every_coverage() -> None:
    index = HybridIndex(TEXTS, VECTORS)
    full, _ = index.lexical_scores("refund card")
    diluted, _ = index.lexical_scores("refund card bitcoin")
    assert full[0] == pytest.approx(1.0)
    assert 0 < diluted[0] < 0.6


def test_an_exact_order_number_lifts_its_text_over_an_equal_cosine() -> None:
    texts = [IndexedText("Order A99999 is on its way."), IndexedText("Order A12345 is on its way.")]
    index = HybridIndex(texts, np.stack([unit(1, 0), unit(1, 0)]))
    assert index.search("where is order A12345", unit(1, 0), k=1)[0].position == 1


def test_dense_only_and_lexical_only_rankings_are_settings() -> None:
    dense_only = HybridIndex(TEXTS, VECTORS, FusionConfig(lexical_weight=0.0))
    lexical_only = HybridIndex(TEXTS, VECTORS, FusionConfig(dense_weight=0.0, lexical_weight=1.0))
    query = "express courier"  # words of text 1, vector of text 0
    assert dense_only.search(query, unit(1, 0, 0), k=1)[0].position == 0
    assert lexical_only.search(query, unit(1, 0, 0), k=1)[0].position == 1


def test_bm25_can_be_the_lexical_signal_and_coverage_is_still_returned() -> None:
    index = HybridIndex(TEXTS, VECTORS, FusionConfig(lexical_signal="bm25", dense_weight=0.0))
    hit = index.search("express courier", unit(1, 0, 0), k=1)[0]
    assert hit.position == 1 and hit.lexical == pytest.approx(1.0)


def test_the_preferred_language_wins_a_near_tie() -> None:
    texts = [IndexedText("Refund in five days.", "en"), IndexedText("五天内退款。", "zh")]
    index = HybridIndex(texts, np.stack([unit(1, 0.001), unit(1, 0)]))
    assert index.search("x", unit(1, 0), k=1)[0].position == 1
    assert index.search("x", unit(1, 0), k=1, prefer_lang="en")[0].position == 0


def test_a_missing_language_is_detected_from_the_text() -> None:
    texts = [IndexedText("Refund in five days."), IndexedText("五天内退款。")]
    index = HybridIndex(texts, np.stack([unit(1, 0.001), unit(1, 0)]))
    assert index.search("x", unit(1, 0), k=1, prefer_lang="en")[0].position == 0


def _two_language_corpus(
    rng: np.random.Generator, topics: int, dim: int = 64
) -> tuple[list[IndexedText], np.ndarray, np.ndarray, np.ndarray]:
    """Topic vectors plus a strong per-language offset, as multilingual encoders have."""
    topic = rng.standard_normal((topics, dim)).astype(np.float32)
    english, chinese = 3 * rng.standard_normal((2, dim)).astype(np.float32)
    vectors = np.vstack([topic[: topics // 2] + english, topic[topics // 2 :] + chinese])
    items = [IndexedText(f"text {i}", "en") for i in range(topics // 2)]
    items += [IndexedText(f"文本{i}", "zh") for i in range(topics - topics // 2)]
    return items, vectors, topic, chinese


def test_a_chinese_query_finds_the_english_text_of_its_topic_despite_the_language_offset() -> None:
    rng = np.random.default_rng(0)
    items, vectors, topic, chinese = _two_language_corpus(rng, topics=40)
    query = topic[3] + chinese  # topic 3 is only written in English
    corrected = HybridIndex(items, vectors)
    raw = HybridIndex(items, vectors, FusionConfig(language_correction=False))
    assert raw.search("文本问题", query, k=1)[0].position >= 20  # a Chinese text, wrongly
    assert corrected.search("文本问题", query, k=1)[0].position == 3


def test_the_language_correction_leaves_same_language_cosines_alone() -> None:
    rng = np.random.default_rng(1)
    items, vectors, topic, chinese = _two_language_corpus(rng, topics=40)
    query = topic[25] + chinese
    hit = HybridIndex(items, vectors).search("文本问题", query, k=1)[0]
    cosine = float(vectors[25] @ query / np.linalg.norm(vectors[25]) / np.linalg.norm(query))
    assert hit.position == 25 and hit.dense == pytest.approx(cosine, abs=1e-5)


def test_a_language_with_few_texts_is_not_corrected() -> None:
    rng = np.random.default_rng(2)
    items, vectors, topic, chinese = _two_language_corpus(rng, topics=14)  # 7 per language
    query = topic[3] + chinese
    assert HybridIndex(items, vectors).search("文本问题", query, k=1)[0].position >= 7


def test_the_lexical_best_is_found_even_outside_the_dense_candidates() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((500, 16)).astype(np.float32)
    items = [IndexedText(f"filler text number {i}", "en") for i in range(500)]
    items[123] = IndexedText("warranty claim form W-77 for blenders", "en")
    config = FusionConfig(lexical_weight=2.0, candidates=5)  # -1 + 2 beats any cosine
    query_vector = -vectors[123]  # the least similar text by cosine
    hits = HybridIndex(items, vectors, config).search("warranty claim W-77", query_vector, k=5)
    assert hits[0].position == 123 and hits[0].lexical == pytest.approx(1.0)


def test_ties_come_back_in_text_order_and_k_is_respected() -> None:
    items = [IndexedText("same words here", "en") for _ in range(10)]
    hits = HybridIndex(items, np.tile(unit(1, 0), (10, 1))).search("same words", unit(1, 0), k=4)
    assert [h.position for h in hits] == [0, 1, 2, 3]


def test_an_empty_index_finds_nothing() -> None:
    index = HybridIndex([], np.zeros((0, 8), dtype=np.float32))
    assert index.search("anything", unit(*[1.0] * 8)) == []
    assert len(index) == 0


def test_vectors_must_match_the_texts() -> None:
    with pytest.raises(ValueError, match="do not match"):
        HybridIndex(TEXTS, VECTORS[:2])


def test_the_query_tokens_of_an_index_are_the_shared_lexical_tokens() -> None:
    index = HybridIndex([IndexedText("Shipping charges apply.")], np.stack([unit(1, 0)]))
    for token in lexical_tokens("shipped, charged"):
        assert index.lexical_scores(token)[0][0] == pytest.approx(1.0)
