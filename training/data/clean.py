"""``chatq train clean``: the rows fit to train on, and a report of every row left out and why.

Each row is checked in this order and counted once, under the first rule it fails:

1. ``malformed``: it could not be read as an example (``sources.read_source`` says why);
2. ``empty_turn``: a customer or assistant turn is empty;
3. ``too_short`` / ``too_long``: a question or answer shorter than the minimum, or a turn
   longer than the maximum, in Latin-character equivalents (``weighted_length``);
4. ``moderation``: the product's moderation blocks a turn, or would mask the answer
   (``moderate.ExampleModeration``; a masked customer turn is kept, masked);
5. ``exact_duplicate``: every turn the same as a row kept before, after normalisation (NFKC,
   casefold, whitespace, punctuation at the ends);
6. ``near_duplicate``: the question and the answer both at least ``near_duplicate_threshold``
   similar to a row kept before (Jaccard of character 3-shingles, MinHash LSH).

Personal data is replaced with the product's placeholders before the duplicate checks
(``anonymise.ExampleAnonymiser``), so rows that differ only in a phone number are duplicates.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from shared.knowledge.text import normalize_question
from shared.logs import get_logger
from shared.moderation import Moderator
from shared.pii import Anonymizer, PlaceholderMap
from training.data.anonymise import ExampleAnonymiser
from training.data.examples import ChatExample
from training.data.moderate import ExampleModeration
from training.data.near_duplicates import Fingerprint, NearDuplicateIndex, jaccard, shingles
from training.data.sources import ReadResult, Rejected

log = get_logger(__name__)

SAMPLES_PER_REASON = 3
SAMPLE_CHARS = 200

# A Chinese character counts as three Latin characters: the shop's FAQ says the same things in
# 3,090 characters of English and 926 of Chinese (3.3 to 1), so one limit fits both languages.
CJK_WEIGHT = 3
_CJK_CHAR = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WHITESPACE = re.compile(r"\s+")


class DropReason(StrEnum):
    MALFORMED = "malformed"
    EMPTY_TURN = "empty_turn"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    MODERATION = "moderation"
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"


class Change(StrEnum):
    PII_ANONYMISED = "pii_anonymised"
    MODERATION_MASKED = "moderation_masked"


class CleanOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_question_chars: int = Field(default=4, ge=0)
    """A question needs this many Latin-character equivalents: "hi", "ok?" and "嗯" are not
    questions a shop can answer; "退货？" (7) and "Refund?" (7) are."""
    min_answer_chars: int = Field(default=4, ge=0)
    """An answer needs this many: "Yes." and "可以" (6) pass, "OK" does not."""
    max_turn_chars: int = Field(default=2000, gt=0)
    """No turn may be longer: about 500 tokens, far beyond a chat turn; longer ones are pasted
    documents or logs, and fine-tuning would truncate them mid-sentence."""
    near_duplicate_threshold: float = Field(default=0.8, gt=0.0, le=1.0)
    """Jaccard similarity (character 3-shingles) from which a row repeats one kept before. 0.8
    catches case, punctuation, a filler particle or a typo ("如何重置路由器" / "…呢": 0.83) and
    keeps real paraphrases ("How do I" / "How can I reset my router": 0.67), which teach the
    model to recognise a question however it is asked."""
    keep_values: tuple[str, ...] = ()
    """Public values the anonymiser keeps (the tenant's support e-mail and phone number);
    an example's own facts are always kept."""


def weighted_length(text: str) -> int:
    """Length in Latin-character equivalents: a Chinese character counts CJK_WEIGHT, any other
    character one, a run of whitespace one."""
    collapsed = _WHITESPACE.sub(" ", text.strip())
    return len(collapsed) + (CJK_WEIGHT - 1) * len(_CJK_CHAR.findall(collapsed))


class Sample(BaseModel):
    line: int | None
    text: str
    """The row, anonymised and cut to SAMPLE_CHARS."""
    detail: str = ""


class CleanReport(BaseModel):
    source: str | None = None
    rows_read: int
    rows_kept: int
    dropped: dict[DropReason, int]
    changed: dict[Change, int]
    samples: dict[DropReason, list[Sample]]
    """Up to SAMPLES_PER_REASON rows per reason."""
    options: CleanOptions

    def summary_lines(self) -> list[str]:
        lines = [f"{self.rows_kept} of {self.rows_read} rows kept"]
        lines += [
            f"  dropped, {reason}: {count}" for reason, count in self.dropped.items() if count
        ]
        lines += [
            f"  changed, {change}: {count}" for change, count in self.changed.items() if count
        ]
        return lines


@dataclass(frozen=True)
class CleanResult:
    examples: list[ChatExample]
    report: CleanReport


def default_report_path(out: Path) -> Path:
    """Where ``clean`` writes the report of ``out``: beside it (``clean.jsonl`` →
    ``clean.report.json``)."""
    return out.with_name(f"{out.name.removesuffix(out.suffix)}.report.json")


def clean_examples(
    source: ReadResult | Sequence[ChatExample],
    *,
    options: CleanOptions | None = None,
    moderator: Moderator | None = None,
    anonymizer: Anonymizer | None = None,
    progress: bool = False,
) -> CleanResult:
    """The rows of ``source`` fit to train on, anonymised, and the report.

    ``moderator`` defaults to the product's base moderator (``Moderator.base()``) and
    ``anonymizer`` to the product's default ``Anonymizer()``; pass a tenant's to use its lists
    and patterns.
    """
    options = options or CleanOptions()
    anonymizer = anonymizer or Anonymizer()
    if isinstance(source, ReadResult):
        examples, lines, rejected = source.examples, source.lines, source.rejected
    else:
        examples, lines, rejected = list(source), [], []
    cleaner = _Cleaner(
        options,
        ExampleModeration(moderator or Moderator.base()),
        ExampleAnonymiser(anonymizer, options.keep_values),
        _SampleWriter(anonymizer),
    )
    for row in rejected:
        cleaner.reject(row)
    rows = tqdm(examples, desc="cleaning", unit="row", disable=not progress)
    for position, example in enumerate(rows):
        cleaner.add(example, lines[position] if position < len(lines) else None)
    report = CleanReport(
        rows_read=len(examples) + len(rejected),
        rows_kept=len(cleaner.kept),
        dropped=cleaner.dropped,
        changed=cleaner.changed,
        samples=cleaner.samples,
        options=options,
    )
    log.info(
        "training data cleaned",
        rows_read=report.rows_read,
        rows_kept=report.rows_kept,
        dropped={reason.value: count for reason, count in report.dropped.items() if count},
    )
    return CleanResult(cleaner.kept, report)


def _turn_text(example: ChatExample) -> str:
    return "\n".join(f"{turn.role}: {turn.content}" for turn in example.messages)


class _SampleWriter:
    """Report samples without personal data: a dropped row was never anonymised."""

    def __init__(self, anonymizer: Anonymizer) -> None:
        self._anonymizer = anonymizer

    def sample(self, line: int | None, text: str, detail: str) -> Sample:
        placeholders = PlaceholderMap(secrets.token_bytes(32))
        clipped = self._anonymizer.anonymize(text, placeholders)[:SAMPLE_CHARS]
        return Sample(line=line, text=clipped, detail=detail)


class _Cleaner:
    def __init__(
        self,
        options: CleanOptions,
        moderation: ExampleModeration,
        anonymiser: ExampleAnonymiser,
        samples: _SampleWriter,
    ) -> None:
        self.options = options
        self.moderation = moderation
        self.anonymiser = anonymiser
        self.sample_writer = samples
        self.kept: list[ChatExample] = []
        self.dropped = dict.fromkeys(DropReason, 0)
        self.changed = dict.fromkeys(Change, 0)
        self.samples: dict[DropReason, list[Sample]] = {reason: [] for reason in DropReason}
        self._kept_lines: list[int | None] = []
        self._exact: dict[tuple[tuple[str, str], ...], int] = {}
        self._questions = NearDuplicateIndex(options.near_duplicate_threshold)
        self._answers: list[frozenset[str]] = []

    def reject(self, row: Rejected) -> None:
        self._drop(DropReason.MALFORMED, row.line, row.raw, row.reason)

    def add(self, example: ChatExample, line: int | None) -> None:
        problem = self._size_problem(example)
        if problem is not None:
            self._drop(problem[0], line, _turn_text(example), problem[1])
            return
        screening = self.moderation.screen(example)
        if screening.example is None:
            self._drop(
                DropReason.MODERATION, line, _turn_text(example), ", ".join(screening.categories)
            )
            return
        if screening.masked:
            self.changed[Change.MODERATION_MASKED] += 1
        example = screening.example
        anonymised = self.anonymiser.anonymise(example)
        if anonymised is not example:
            self.changed[Change.PII_ANONYMISED] += 1
        example = anonymised

        key = tuple((turn.role, normalize_question(turn.content)) for turn in example.messages)
        if key in self._exact:
            self._drop(DropReason.EXACT_DUPLICATE, line, _turn_text(example), self._like(key))
            return
        question = Fingerprint.of("\n".join(turn.content for turn in example.messages[:-1]))
        answer = shingles(example.answer)
        threshold = self.options.near_duplicate_threshold
        for earlier in self._questions.similar(question):
            if jaccard(answer, self._answers[earlier]) >= threshold:
                detail = self._like_kept(earlier)
                self._drop(DropReason.NEAR_DUPLICATE, line, _turn_text(example), detail)
                return
        position = len(self.kept)
        self._exact[key] = position
        self._questions.add(position, question)
        self._answers.append(answer)
        self.kept.append(example)
        self._kept_lines.append(line)

    def _size_problem(self, example: ChatExample) -> tuple[DropReason, str] | None:
        options = self.options
        for number, turn in enumerate(example.messages, start=1):
            size = weighted_length(turn.content)
            if size == 0 and turn.role != "system":
                return DropReason.EMPTY_TURN, f"turn {number} ({turn.role}) is empty"
            if size > options.max_turn_chars:
                return (
                    DropReason.TOO_LONG,
                    f"turn {number} ({turn.role}): {size} > {options.max_turn_chars} chars",
                )
        last_question = next(t for t in reversed(example.messages) if t.role == "user")
        question = weighted_length(last_question.content)
        if question < options.min_question_chars:
            return (
                DropReason.TOO_SHORT,
                f"question: {question} < {options.min_question_chars} chars",
            )
        answer = weighted_length(example.answer)
        if answer < options.min_answer_chars:
            return DropReason.TOO_SHORT, f"answer: {answer} < {options.min_answer_chars} chars"
        return None

    def _like(self, key: tuple[tuple[str, str], ...]) -> str:
        return self._like_kept(self._exact[key])

    def _like_kept(self, position: int) -> str:
        line = self._kept_lines[position]
        return f"like line {line}" if line is not None else f"like kept row {position + 1}"

    def _drop(self, reason: DropReason, line: int | None, text: str, detail: str) -> None:
        self.dropped[reason] += 1
        if len(self.samples[reason]) < SAMPLES_PER_REASON:
            self.samples[reason].append(self.sample_writer.sample(line, text, detail))
