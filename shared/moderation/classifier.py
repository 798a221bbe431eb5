"""The English offensive-language score of ``alt-profanity-check`` (MIT), computed here.

The package ships a scikit-learn pipeline: a word-unigram TF-IDF (English stop words, l2 norm)
and a LinearSVC calibrated with sigmoids over five folds. Its own ``predict_prob`` imports
scikit-learn (1.7 s) and takes ~6 ms for 500 characters; this module reads the same two joblib
files with the scikit-learn classes replaced by plain attribute holders (0.1 s, scikit-learn is
never imported) and computes the same probability in pure Python in ~0.05 ms. A unit test checks
the scores against the package's own ``predict_prob``.

English only: it has no Chinese vocabulary. Chinese is covered by the lexicon alone (no
Chinese moderation classifier ships its weights in a package; FACTS.md).
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joblib.numpy_pickle import NumpyUnpickler

# TfidfVectorizer's token_pattern, lowercase=True
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


class _Attributes:
    """Stands in for a scikit-learn class while unpickling: keeps the fitted attributes."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class _AttributesUnpickler(NumpyUnpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "sklearn" or module.startswith("sklearn."):
            return type(name, (_Attributes,), {"origin": f"{module}.{name}"})
        return super().find_class(module, name)


def _load(path: Path) -> Any:
    with path.open("rb") as handle:
        return _AttributesUnpickler(str(path), handle, ensure_native_byte_order=True).load()


def package_data_dir() -> Path:
    """alt-profanity-check's data folder, found without importing the package (its import
    loads scikit-learn)."""
    spec = importlib.util.find_spec("profanity_check")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("alt-profanity-check is not installed (pip install alt-profanity-check)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@dataclass(frozen=True)
class _Fold:
    """One calibrated LinearSVC: p = 1 / (1 + exp(a · decision + b))."""

    intercept: float
    a: float
    b: float


class ProfanityClassifier:
    """``score(text)`` in [0, 1]: the probability that English text is offensive."""

    def __init__(self, data_dir: Path | None = None) -> None:
        folder = data_dir or package_data_dir()
        vectorizer = _load(folder / "vectorizer.joblib")
        model = _load(folder / "model.joblib")
        if vectorizer.ngram_range != (1, 1) or vectorizer.analyzer != "word":
            raise RuntimeError("alt-profanity-check's vectorizer changed: recheck this module")
        idf = vectorizer._tfidf.idf_
        folds = model.calibrated_classifiers_
        coefficients = [fold.estimator.coef_[0] for fold in folds]
        self._folds = [
            _Fold(
                float(fold.estimator.intercept_[0]),
                float(fold.calibrators[0].a_),
                float(fold.calibrators[0].b_),
            )
            for fold in folds
        ]
        # token → (idf, the weight of each fold)
        self._weights: dict[str, tuple[float, tuple[float, ...]]] = {
            token: (float(idf[column]), tuple(float(c[column]) for c in coefficients))
            for token, column in vectorizer.vocabulary_.items()
        }

    def score(self, text: str) -> float:
        counts = Counter(token for token in _TOKEN.findall(text.lower()) if token in self._weights)
        decisions = [fold.intercept for fold in self._folds]
        if counts:
            norm = 0.0
            sums = [0.0] * len(self._folds)
            for token, count in counts.items():
                idf, weights = self._weights[token]
                value = count * idf
                norm += value * value
                for index, weight in enumerate(weights):
                    sums[index] += value * weight
            norm = math.sqrt(norm)
            decisions = [d + s / norm for d, s in zip(decisions, sums, strict=True)]
        probabilities = [
            _sigmoid(-(fold.a * decision + fold.b))
            for fold, decision in zip(self._folds, decisions, strict=True)
        ]
        return sum(probabilities) / len(probabilities)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
