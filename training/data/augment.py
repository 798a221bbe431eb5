"""``chatq train augment``: more wordings of the training questions, never of their answers.

For each training row, up to ``per_example`` new rows whose last customer turn is reworded:

- ``augment:synonym``: one curated synonym swapped (运费 → 邮费, shipping → delivery);
- ``augment:template``: the question in a customer-style frame ("请问…", "Quick question: …");
- ``augment:backtranslation``: translated into the other language and back, only when a
  translation model folder (or a ``Translator``) is given.

The answer, the facts, the language and every other turn are copied unchanged, so a new row is
exactly as right as the row it came from. Augmentation runs after ``split``, on the train file
only: rows marked eval are refused, so no rewording of an eval question can reach training.
Rows that are already augmented are kept as they are. The rewordings of a row are drawn with a
random generator seeded by the seed and the question, so the order of the rows does not change
them (except that a wording already in the data is never added twice).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel
from tqdm import tqdm

from shared.knowledge.text import detect_language, normalize_question
from shared.logs import get_logger
from training.data.back_translation import FolderTranslator, Lang, Translator, back_translate
from training.data.clean import weighted_length
from training.data.examples import ChatExample, ChatTurn
from training.data.rewrites import synonym_rewrites, template_rewrites

log = get_logger(__name__)

Method = Literal["synonym", "template", "backtranslation"]
METHODS: tuple[Method, ...] = ("synonym", "template", "backtranslation")
DEFAULT_PER_EXAMPLE = 2
# A back-translation this much shorter or longer than the question lost or invented content.
_BACK_TRANSLATION_LENGTH_RATIO = (0.5, 2.0)


class AugmentReport(BaseModel):
    rows_in: int
    rows_out: int
    produced: dict[str, int]
    """New rows per origin ("augment:synonym", …)."""
    not_augmented: dict[str, int]
    """Input rows that got no new row, per reason."""
    back_translation: str
    """What back-translation did, or why it was skipped."""

    def summary_lines(self) -> list[str]:
        lines = [f"{self.rows_out} rows: {self.rows_in} given + {sum(self.produced.values())} new"]
        lines += [f"  {origin}: {count}" for origin, count in sorted(self.produced.items())]
        lines += [f"  not augmented, {why}: {n}" for why, n in sorted(self.not_augmented.items())]
        lines.append(f"  back-translation: {self.back_translation}")
        return lines


@dataclass(frozen=True)
class AugmentResult:
    examples: list[ChatExample]
    """The given rows, each followed by the rows made from it."""
    report: AugmentReport


def augment_examples(
    train: Sequence[ChatExample],
    *,
    per_example: int = DEFAULT_PER_EXAMPLE,
    seed: int = 0,
    translation: Path | Translator | None = None,
    progress: bool = False,
) -> AugmentResult:
    """``train`` plus up to ``per_example`` reworded rows for each of its rows.

    ``translation``: a folder of translation models (``back_translation.FolderTranslator``) or
    a translator; None skips back-translation. Raises ValueError for rows marked eval.
    """
    if per_example < 0:
        raise ValueError(f"per_example must be 0 or more, not {per_example}")
    held_out = sum(example.split == "eval" for example in train)
    if held_out:
        raise ValueError(
            f"{held_out} rows are marked eval: augment the train file of `chatq train split` "
            "only, so no rewording of an eval question reaches training"
        )
    translator = (
        FolderTranslator(translation, progress=progress)
        if isinstance(translation, Path)
        else translation
    )
    back_translations, back_translation_note = _back_translations(train, translator)

    seen = {normalize_question(_last_question(example).content) for example in train}
    produced: Counter[str] = Counter()
    not_augmented: Counter[str] = Counter()
    output: list[ChatExample] = []
    rows = tqdm(train, desc="augmenting", unit="row", disable=not progress)
    for position, example in enumerate(rows):
        output.append(example)
        if example.augmented:
            not_augmented["already augmented"] += 1
            continue
        if per_example == 0:
            continue
        question = _last_question(example).content
        pools: dict[Method, list[str]] = {
            "synonym": synonym_rewrites(question, example.lang),
            "template": template_rewrites(question, example.lang),
            "backtranslation": back_translations.get(position, []),
        }
        new_rows = _pick(pools, per_example, random.Random(f"{seed}\x00{question}"), seen)
        if not new_rows:
            not_augmented["no new wording"] += 1
        for method, text in new_rows:
            output.append(_reworded(example, text, method))
            produced[f"augment:{method}"] += 1
    report = AugmentReport(
        rows_in=len(train),
        rows_out=len(output),
        produced=dict(produced),
        not_augmented=dict(not_augmented),
        back_translation=back_translation_note,
    )
    log.info("training data augmented", rows_in=len(train), new=sum(produced.values()))
    return AugmentResult(output, report)


def _pick(
    pools: dict[Method, list[str]],
    wanted: int,
    rng: random.Random,
    seen: set[str],
) -> list[tuple[Method, str]]:
    """Up to ``wanted`` rewordings, taking the methods in turn (in an order drawn from ``rng``)
    so one method does not crowd out the others; none the same as a question seen before."""
    shuffled = {method: rng.sample(texts, len(texts)) for method, texts in pools.items()}
    order = rng.sample(METHODS, len(METHODS))
    picked: list[tuple[Method, str]] = []
    while len(picked) < wanted and any(shuffled.values()):
        for method in order:
            while shuffled[method] and len(picked) < wanted:
                text = shuffled[method].pop()
                key = normalize_question(text)
                if key and key not in seen:
                    seen.add(key)
                    picked.append((method, text))
                    break
    return picked


def _last_question(example: ChatExample) -> ChatTurn:
    return next(turn for turn in reversed(example.messages) if turn.role == "user")


def _reworded(example: ChatExample, question: str, method: Method) -> ChatExample:
    position = max(i for i, turn in enumerate(example.messages) if turn.role == "user")
    messages = list(example.messages)
    messages[position] = ChatTurn(role="user", content=question)
    return example.model_copy(update={"messages": messages, "origin": f"augment:{method}"})


def _back_translations(
    train: Sequence[ChatExample], translator: Translator | None
) -> tuple[dict[int, list[str]], str]:
    """The usable back-translation of each row's question (by position; rows already
    augmented are not translated), and what the step did."""
    if translator is None:
        return {}, "skipped: no translation model folder given"
    found: dict[int, list[str]] = {}
    rejected = 0
    languages: tuple[Lang, ...] = ("en", "zh")
    for lang in languages:
        positions = [
            position
            for position, example in enumerate(train)
            if example.lang == lang and not example.augmented
        ]
        questions = [_last_question(train[position]).content for position in positions]
        translated = back_translate(questions, lang, translator)
        for position, question, text in zip(positions, questions, translated, strict=True):
            if _usable_back_translation(question, text, lang):
                found[position] = [text]
            else:
                rejected += 1
    return found, f"ran: {len(found)} questions reworded, {rejected} translations rejected"


def _usable_back_translation(question: str, text: str, lang: str) -> bool:
    """Not empty, not the question again, in its language, and about its length."""
    if not text.strip() or normalize_question(text) == normalize_question(question):
        return False
    if detect_language(text) != lang:
        return False
    low, high = _BACK_TRANSLATION_LENGTH_RATIO
    ratio = weighted_length(text) / max(1, weighted_length(question))
    return low <= ratio <= high
