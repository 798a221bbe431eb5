"""``chatq moderation eval FILE``: precision and recall of the moderator on a labelled set.

The file (``examples/moderation/labelled.yaml`` is the shipped one)::

    name: chatq-moderation
    lists:                       # optional: tenant lists applied for this evaluation
      - {name: acme-competitors, category: custom, terms: [MegaMart], allow: []}
    items:
      - {text: "you idiot", lang: en, labels: [abuse]}
      - {text: "操作系统", lang: zh, labels: []}        # [] = clean

Scores are counted per (item, category): a category the moderator finds and the label has is a
true positive, one it finds and the label lacks a false positive, one the label has and it
misses a false negative. They are reported per language and category, per language, overall,
and per item as "flagged" (any category found vs any labelled), the figure a business sees.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.moderation import CATEGORIES, Moderator, TermList

ALL = "all"
FLAGGED = "flagged"


class EvalSetError(ValueError):
    """A moderation eval file that cannot be used; the message names the file, the item and
    what is wrong."""


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    lang: Literal["en", "zh"]
    labels: list[str]

    @field_validator("labels")
    @classmethod
    def _known(cls, labels: list[str]) -> list[str]:
        for label in labels:
            if label not in CATEGORIES:
                raise ValueError(f"unknown label {label!r}; known: {', '.join(CATEGORIES)}")
        if len(set(labels)) != len(labels):
            raise ValueError("a label is repeated")
        return labels


class _List(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    category: str
    terms: list[str] = Field(default_factory=list)
    allow: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class EvalSet:
    name: str
    lists: tuple[TermList, ...]
    items: tuple[_Item, ...]


def _where(error: ValidationError) -> str:
    first = error.errors()[0]
    place = ".".join(str(part) for part in first["loc"])
    return f"{place}: {first['msg']}" if place else first["msg"]


def load_eval_set(path: Path) -> EvalSet:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise EvalSetError(f"{path}: cannot read: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise EvalSetError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise EvalSetError(f"{path}: expected a mapping with 'items', got {type(data).__name__}")
    unknown = set(data) - {"name", "lists", "items"}
    if unknown:
        raise EvalSetError(f"{path}: unknown keys {sorted(unknown)} (expected name, lists, items)")
    raw_items = data.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise EvalSetError(f"{path}: 'items' must be a non-empty list")
    items: list[_Item] = []
    for number, raw in enumerate(raw_items, start=1):
        if not isinstance(raw, dict):
            raise EvalSetError(f"{path}: item {number}: expected a mapping, got {raw!r}")
        try:
            items.append(_Item.model_validate(raw))
        except ValidationError as error:
            raise EvalSetError(f"{path}: item {number}: {_where(error)}") from None
    lists: list[TermList] = []
    raw_lists = data.get("lists") or []
    if not isinstance(raw_lists, list):
        raise EvalSetError(f"{path}: 'lists' must be a list")
    for number, raw in enumerate(raw_lists, start=1):
        try:
            parsed = _List.model_validate(raw)
            lists.append(
                TermList(parsed.name, parsed.category, tuple(parsed.terms), tuple(parsed.allow))
            )
        except ValidationError as error:
            raise EvalSetError(f"{path}: list {number}: {_where(error)}") from None
        except ValueError as error:
            raise EvalSetError(f"{path}: list {number}: {error}") from None
    name = data.get("name") or path.stem
    return EvalSet(str(name), tuple(lists), tuple(items))


@dataclass
class Score:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    def add(self, expected: bool, found: bool) -> None:
        self.true_positives += expected and found
        self.false_positives += found and not expected
        self.false_negatives += expected and not found

    @property
    def precision(self) -> float | None:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else None

    @property
    def recall(self) -> float | None:
        expected = self.true_positives + self.false_negatives
        return self.true_positives / expected if expected else None

    @property
    def support(self) -> int:
        return self.true_positives + self.false_negatives

    def as_dict(self) -> dict[str, Any]:
        return {
            "precision": _rounded(self.precision),
            "recall": _rounded(self.recall),
            "tp": self.true_positives,
            "fp": self.false_positives,
            "fn": self.false_negatives,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True)
class Miss:
    """An item the moderator got wrong (any category)."""

    number: int
    lang: str
    text: str
    expected: tuple[str, ...]
    found: tuple[str, ...]


@dataclass
class ModerationReport:
    name: str
    items: int
    items_by_language: dict[str, int]
    scores: dict[str, dict[str, Score]]
    """language (or "all") → category (or "all" for the micro average, or "flagged" for the
    item-level any-category figure) → score."""
    misses: list[Miss] = field(default_factory=list)
    check_ms_p50: float = 0.0

    def score(self, language: str = ALL, category: str = ALL) -> Score:
        return self.scores[language][category]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``json.dumps(report.to_json())``)."""
        return {
            "name": self.name,
            "items": self.items,
            "items_by_language": self.items_by_language,
            "scores": {
                language: {category: score.as_dict() for category, score in row.items()}
                for language, row in self.scores.items()
            },
            "misses": [asdict(miss) for miss in self.misses],
            "check_ms_p50": round(self.check_ms_p50, 4),
        }


def evaluate(path: Path, moderator: Moderator | None = None) -> ModerationReport:
    """Run the moderator (default: the base one) with the file's tenant lists over every item."""
    eval_set = load_eval_set(path)
    base = moderator or Moderator.base()
    judge = base.with_tenant(eval_set.lists, None) if eval_set.lists else base
    scores: dict[str, dict[str, Score]] = defaultdict(lambda: defaultdict(Score))
    misses: list[Miss] = []
    durations: list[float] = []
    by_language: dict[str, int] = defaultdict(int)
    for number, item in enumerate(eval_set.items, start=1):
        started = time.perf_counter()
        result = judge.check(item.text, stage="input", lang=item.lang)
        durations.append((time.perf_counter() - started) * 1000)
        by_language[item.lang] += 1
        expected, found = set(item.labels), set(result.categories)
        for language in (item.lang, ALL):
            row = scores[language]
            for category in CATEGORIES:
                hit = (category in expected, category in found)
                if any(hit):
                    row[category].add(*hit)
                    row[ALL].add(*hit)
            row[FLAGGED].add(bool(expected), bool(found))
        if expected != found:
            misses.append(
                Miss(number, item.lang, item.text, tuple(sorted(expected)), tuple(sorted(found)))
            )
    durations.sort()
    return ModerationReport(
        name=eval_set.name,
        items=len(eval_set.items),
        items_by_language=dict(by_language),
        scores={language: dict(row) for language, row in scores.items()},
        misses=misses,
        check_ms_p50=durations[len(durations) // 2],
    )


def _cell(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def format_report(report: ModerationReport, *, show_misses: bool = True) -> str:
    """A plain-text table: one row per (language, category), then the misses."""
    languages = [language for language in sorted(report.scores) if language != ALL] + [ALL]
    lines = [
        f"moderation eval: {report.name} — {report.items} items "
        + ", ".join(f"{k}: {v}" for k, v in sorted(report.items_by_language.items())),
        "",
        f"{'lang':<5} {'category':<10} {'precision':>9} {'recall':>7}"
        f" {'tp':>4} {'fp':>4} {'fn':>4}",
    ]
    for language in languages:
        row = report.scores[language]
        for category in (*CATEGORIES, ALL, FLAGGED):
            score = row.get(category)
            if score is None:
                continue
            lines.append(
                f"{language:<5} {category:<10} {_cell(score.precision):>9} {_cell(score.recall):>7}"
                f" {score.true_positives:>4} {score.false_positives:>4} {score.false_negatives:>4}"
            )
        lines.append("")
    lines.append(f"check p50: {report.check_ms_p50:.3f} ms")
    if show_misses and report.misses:
        lines.append("")
        lines.append(f"{len(report.misses)} items differ from their labels:")
        for miss in report.misses:
            lines.append(
                f"  #{miss.number} [{miss.lang}] expected {list(miss.expected)}"
                f" found {list(miss.found)}: {miss.text}"
            )
    return "\n".join(lines)
