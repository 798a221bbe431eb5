"""``chatq train split``: a held-out evaluation set that shares no question with training.

Rows are grouped first: rows whose questions are near duplicates of each other (character
3-shingles, Jaccard at least ``group_threshold``, linked through chains) form one group, and a
group goes to one side whole, so a question and its near-copy never straddle train and eval.
``group_threshold`` (0.6) is below cleaning's 0.8 on purpose: cleaning drops copies, the split
must also keep close rewordings together ("How do I reset my router?" / "… please?": 0.76,
"How do I" / "How can I": 0.67), while real paraphrases ("如何" / "怎么重置路由器": 0.43) may
land on either side, which is what a held-out set should test.

Within each language, groups are ordered by a hash of the seed and the group's normalised
question (its first in sorted order), and taken into eval in that order until the language's
share is reached: the split is the same on every run and machine for one seed, both languages
are in eval whenever each has two groups, and no group ever is on both sides.

Augmentation comes after this, on the train file only (``augment.augment_examples`` refuses
rows marked eval, and this refuses augmented rows).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from shared.knowledge.text import normalize_question
from shared.logs import get_logger
from training.data.examples import ChatExample
from training.data.near_duplicates import near_duplicate_groups

log = get_logger(__name__)

DEFAULT_EVAL_SHARE = 0.15
DEFAULT_GROUP_THRESHOLD = 0.6


class SplitReport(BaseModel):
    seed: int
    eval_share: float
    groups: int
    train: dict[str, int]
    """Rows per language."""
    eval: dict[str, int]

    def summary_lines(self) -> list[str]:
        def counts(side: dict[str, int]) -> str:
            return ", ".join(f"{lang} {count}" for lang, count in sorted(side.items())) or "none"

        return [
            f"train: {sum(self.train.values())} rows ({counts(self.train)})",
            f"eval: {sum(self.eval.values())} rows ({counts(self.eval)})",
            f"{self.groups} question groups, seed {self.seed}",
        ]


@dataclass(frozen=True)
class SplitResult:
    train: list[ChatExample]
    """Marked ``split="train"``, in their input order."""
    eval: list[ChatExample]
    """Marked ``split="eval"``, in their input order."""
    report: SplitReport


def question_text(example: ChatExample) -> str:
    """What a row asks: its customer turns, in order."""
    return "\n".join(turn.content for turn in example.messages if turn.role == "user")


def split_examples(
    examples: Sequence[ChatExample],
    *,
    eval_share: float = DEFAULT_EVAL_SHARE,
    seed: int = 0,
    group_threshold: float = DEFAULT_GROUP_THRESHOLD,
    progress: bool = False,
) -> SplitResult:
    """Train and eval rows of ``examples``; the same result for the same rows and seed."""
    if not 0.0 <= eval_share < 1.0:
        raise ValueError(f"the eval share must be at least 0 and below 1, not {eval_share}")
    augmented = sum(example.augmented for example in examples)
    if augmented:
        raise ValueError(
            f"{augmented} rows are augmented: split the cleaned data first, then augment the "
            "train file only (augmented rows must never reach eval)"
        )
    questions = [question_text(example) for example in examples]
    roots = near_duplicate_groups(questions, group_threshold, progress=progress)
    members: dict[int, list[int]] = defaultdict(list)
    for position, root in enumerate(roots):
        members[root].append(position)

    by_language: dict[str, list[tuple[str, list[int]]]] = defaultdict(list)
    for positions in members.values():
        key = min(normalize_question(questions[position]) for position in positions)
        rank = hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()
        languages = Counter(examples[position].lang for position in positions)
        language = min(languages, key=lambda lang: (-languages[lang], lang))
        by_language[language].append((rank, positions))

    in_eval: set[int] = set()
    for groups in by_language.values():
        in_eval.update(_eval_positions(sorted(groups), eval_share))

    train = [
        e.model_copy(update={"split": "train"}) for i, e in enumerate(examples) if i not in in_eval
    ]
    held_out = [
        e.model_copy(update={"split": "eval"}) for i, e in enumerate(examples) if i in in_eval
    ]
    report = SplitReport(
        seed=seed,
        eval_share=eval_share,
        groups=len(members),
        train=dict(Counter(example.lang for example in train)),
        eval=dict(Counter(example.lang for example in held_out)),
    )
    log.info("training data split", train=len(train), eval=len(held_out), groups=len(members))
    return SplitResult(train, held_out, report)


def _eval_positions(ranked_groups: list[tuple[str, list[int]]], eval_share: float) -> list[int]:
    """The rows of the first groups in rank order that make up the share of this language; at
    least one group when the share is not zero, never every group."""
    if eval_share == 0.0 or len(ranked_groups) < 2:
        return []
    rows = sum(len(positions) for _, positions in ranked_groups)
    target = max(1, round(eval_share * rows))
    chosen: list[int] = []
    for _, positions in ranked_groups[:-1]:
        if len(chosen) >= target:
            break
        chosen.extend(positions)
    return chosen
