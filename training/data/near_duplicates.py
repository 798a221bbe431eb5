"""Near-duplicate texts in English and Chinese: character 3-shingles, MinHash LSH to find
candidates, the exact Jaccard similarity to confirm them.

Character shingles rather than words, because Chinese is written without spaces; three
characters, because most Chinese words have two and a 3-shingle then also records which word
follows which, while English 3-grams survive inflections ("return", "returns"). Texts are compared
in the form the product uses for its answer-cache keys (``normalize_question``: NFKC, casefold,
whitespace, punctuation at the ends), so case, full-width forms and a trailing "？？" never count.

Measured Jaccard similarities of 3-shingles (they guide the thresholds chosen by the callers):

    How do I reset my router?  /  how do i reset my router??          1.00  (a copy)
    如何重置路由器？            /  如何重置路由器呢？                 0.83  (a filler particle)
    How do I reset my router?  /  How do I reset my router please?    0.76  (a filler word)
    How do I reset my router?  /  How can I reset my router?          0.67  (a paraphrase)
    How long is the warranty on routers? / … on kettles?              0.65  (another question)
    如何重置路由器？            /  怎么重置路由器？                   0.43  (a paraphrase)

LSH only proposes candidates (it can miss a pair a little above the threshold and propose one
below it); every candidate is confirmed with the exact similarity, so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from datasketch import MinHash, MinHashLSH
from tqdm import tqdm

from shared.knowledge.text import normalize_question

SHINGLE_SIZE = 3
NUM_PERMUTATIONS = 128
# MinHash permutations are drawn from this seed: the same texts give the same signatures in
# every run, so cleaning and splitting are reproducible.
_MINHASH_SEED = 1


def shingles(text: str) -> frozenset[str]:
    """The character 3-shingles of the normalised text (the whole text when shorter)."""
    normalised = normalize_question(text)
    if len(normalised) <= SHINGLE_SIZE:
        return frozenset({normalised}) if normalised else frozenset()
    return frozenset(
        normalised[i : i + SHINGLE_SIZE] for i in range(len(normalised) - SHINGLE_SIZE + 1)
    )


def jaccard(first: frozenset[str], second: frozenset[str]) -> float:
    if not first and not second:
        return 1.0
    return len(first & second) / len(first | second)


@dataclass(frozen=True)
class Fingerprint:
    """A text's shingles and their MinHash signature (None for an empty text)."""

    shingles: frozenset[str]
    signature: MinHash | None

    @classmethod
    def of(cls, text: str) -> Fingerprint:
        shingle_set = shingles(text)
        if not shingle_set:
            return cls(shingle_set, None)
        signature = MinHash(num_perm=NUM_PERMUTATIONS, seed=_MINHASH_SEED)
        signature.update_batch([shingle.encode("utf-8") for shingle in shingle_set])
        return cls(shingle_set, signature)


class NearDuplicateIndex:
    """Texts added under integer keys; ``similar`` finds the added ones at least ``threshold``
    similar (Jaccard of 3-shingles) to a new text."""

    def __init__(self, threshold: float) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"a near-duplicate threshold must be in (0, 1], not {threshold}")
        self.threshold = threshold
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERMUTATIONS)
        self._shingles: dict[int, frozenset[str]] = {}

    def add(self, key: int, fingerprint: Fingerprint) -> None:
        if key in self._shingles:
            raise ValueError(f"key {key} is already in the index")
        self._shingles[key] = fingerprint.shingles
        if fingerprint.signature is not None:  # an empty text is nobody's near duplicate
            self._lsh.insert(str(key), fingerprint.signature)

    def similar(self, fingerprint: Fingerprint) -> list[int]:
        """Keys of the added texts similar to this one, in the order they were added."""
        if fingerprint.signature is None:
            return []
        candidates = (int(key) for key in self._lsh.query(fingerprint.signature))
        confirmed = [
            key
            for key in candidates
            if jaccard(fingerprint.shingles, self._shingles[key]) >= self.threshold
        ]
        return sorted(confirmed)


def near_duplicate_groups(
    texts: Sequence[str], threshold: float, *, progress: bool = False
) -> list[int]:
    """For each text, the index of the first text of its group: texts linked by a chain of
    near-duplicate pairs share a group (union-find), whatever order they come in."""
    index = NearDuplicateIndex(threshold)
    parent = list(range(len(texts)))

    def root(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    rows = tqdm(texts, desc="grouping questions", unit="row", disable=not progress)
    for position, text in enumerate(rows):
        fingerprint = Fingerprint.of(text)
        for other in index.similar(fingerprint):
            first, second = sorted((root(position), root(other)))
            parent[second] = first  # the earliest text stays the root
        index.add(position, fingerprint)
    return [root(position) for position in range(len(texts))]
