"""Base against fine-tuned, side by side: one row per figure, a column per model and, after
each fine-tuned model, its change from the base. Held-out figures come from ``evaluate_model``;
``chatq eval`` runs (``RunSummary``, already computed against a stack serving each model) add a
section each when given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from chatq.evaluation.report import RunSummary, Tally
from training.evaluation.held_out import HeldOutScores, Share

T = TypeVar("T")

LANGS = ("en", "zh")
BASE_LABEL = "base"


class FigureKind(StrEnum):
    """How a figure is read: what its change means and which way is better."""

    SHARE = "share"  # higher is better; changes in percentage points
    SIMILARITY = "similarity"  # higher is better
    PERPLEXITY = "perplexity"  # lower is better


class Cell(BaseModel):
    value: float | None
    hits: int | None = None  # for a share: how many of ``total``
    total: int | None = None


class ComparisonRow(BaseModel):
    section: str
    figure: str
    kind: FigureKind
    cells: dict[str, Cell]  # column label → its figure
    changes: dict[str, float | None]  # fine-tuned column label → its value minus the base's


class Comparison(BaseModel):
    base: str  # the base model's folder
    columns: dict[str, str]  # column label → model folder, base first
    rows: list[ComparisonRow]

    def table(self) -> str:
        """The comparison as aligned text (``change``: fine-tuned minus base)."""
        return render_table(self)


def _share_cell(share: Share | None) -> Cell:
    if share is None:
        return Cell(value=None)
    return Cell(value=share.rate, hits=share.hits, total=share.total)


def _tally_cell(tally: Tally | None) -> Cell:
    if tally is None:
        return Cell(value=None)
    return Cell(value=tally.accuracy, hits=tally.correct, total=tally.total)


def column_labels(base: HeldOutScores, tuned: Sequence[HeldOutScores]) -> list[str]:
    """``base``, then each fine-tuned model's folder name (numbered where names repeat)."""
    labels = [BASE_LABEL]
    for scores in tuned:
        name = Path(scores.model_dir).name or scores.model_dir
        label, number = name, 2
        while label in labels:
            label, number = f"{name} ({number})", number + 1
        labels.append(label)
    return labels


def _row(section: str, figure: str, kind: FigureKind, cells: dict[str, Cell]) -> ComparisonRow:
    base_value = cells[BASE_LABEL].value
    changes = {
        label: None if cell.value is None or base_value is None else cell.value - base_value
        for label, cell in cells.items()
        if label != BASE_LABEL
    }
    return ComparisonRow(section=section, figure=figure, kind=kind, cells=cells, changes=changes)


Figure = tuple[str, FigureKind, Callable[[T], Cell]]


def _rows(
    section: str, figures: Sequence[Figure[T]], columns: Mapping[str, T | None]
) -> list[ComparisonRow]:
    """One row per figure; a column without a source (``None``) shows no value."""
    return [
        _row(
            section,
            figure,
            kind,
            {label: Cell(value=None) if of is None else cell(of) for label, of in columns.items()},
        )
        for figure, kind, cell in figures
    ]


def _facts_in(lang: str) -> Callable[[HeldOutScores], Cell]:
    return lambda scores: _share_cell(scores.fact_accuracy_by_lang.get(lang))


def _perplexity_in(lang: str) -> Callable[[HeldOutScores], Cell]:
    return lambda scores: Cell(value=scores.perplexity_by_lang.get(lang))


def _accuracy_in(lang: str) -> Callable[[RunSummary], Cell]:
    return lambda summary: _tally_cell(summary.by_lang.get(lang))


HELD_OUT_FIGURES: list[Figure[HeldOutScores]] = [
    ("exact facts", FigureKind.SHARE, lambda scores: _share_cell(scores.fact_accuracy)),
    *((f"exact facts {lang}", FigureKind.SHARE, _facts_in(lang)) for lang in LANGS),
    ("similarity", FigureKind.SIMILARITY, lambda scores: Cell(value=scores.similarity)),
    ("perplexity", FigureKind.PERPLEXITY, lambda scores: Cell(value=scores.perplexity)),
    *((f"perplexity {lang}", FigureKind.PERPLEXITY, _perplexity_in(lang)) for lang in LANGS),
]

CHATQ_EVAL_FIGURES: list[Figure[RunSummary]] = [
    ("accuracy", FigureKind.SHARE, lambda summary: _tally_cell(summary.overall)),
    *((f"accuracy {lang}", FigureKind.SHARE, _accuracy_in(lang)) for lang in LANGS),
]
CHATQ_EVAL_SIMILARITY: Figure[RunSummary] = (
    "similarity",
    FigureKind.SIMILARITY,
    lambda summary: Cell(value=summary.mean_similarity),
)


def _held_out_rows(columns: Mapping[str, HeldOutScores]) -> list[ComparisonRow]:
    counts = sorted({scores.examples for scores in columns.values()})
    section = f"held-out ({'/'.join(map(str, counts))} examples)"
    return _rows(section, HELD_OUT_FIGURES, columns)


def _chatq_eval_rows(columns: Mapping[str, Sequence[RunSummary]]) -> list[ComparisonRow]:
    """A section per ``chatq eval`` mode (``RunSummary.label``) any model was run in."""
    modes = list(dict.fromkeys(s.label for runs in columns.values() for s in runs))
    rows: list[ComparisonRow] = []
    for mode in modes:
        runs = {
            label: next((s for s in summaries if s.label == mode), None)
            for label, summaries in columns.items()
        }
        figures = list(CHATQ_EVAL_FIGURES)
        if any(run is not None and run.mean_similarity is not None for run in runs.values()):
            figures.append(CHATQ_EVAL_SIMILARITY)
        rows += _rows(f"chatq eval: {mode}", figures, runs)
    return rows


def compare_models(
    base: HeldOutScores,
    tuned: Sequence[HeldOutScores],
    chatq_eval: Mapping[Path, Sequence[RunSummary]] | None = None,
) -> Comparison:
    """The held-out figures of ``base`` and each of ``tuned`` side by side; ``chatq_eval`` maps a
    model folder (one of theirs) to the ``chatq eval`` runs of a stack serving that model."""
    labels = column_labels(base, tuned)
    models = [base, *tuned]
    rows = _held_out_rows(dict(zip(labels, models, strict=True)))
    if chatq_eval:
        by_folder = {Path(folder).resolve(): runs for folder, runs in chatq_eval.items()}
        unknown = set(by_folder) - {Path(m.model_dir).resolve() for m in models}
        if unknown:
            raise ValueError(
                f"chatq eval results for {sorted(map(str, unknown))}, which are not among the "
                "compared models"
            )
        runs = {
            label: by_folder.get(Path(model.model_dir).resolve(), ())
            for label, model in zip(labels, models, strict=True)
        }
        rows += _chatq_eval_rows(runs)
    columns = {label: model.model_dir for label, model in zip(labels, models, strict=True)}
    return Comparison(base=base.model_dir, columns=columns, rows=rows)


def _format_value(cell: Cell, kind: FigureKind) -> str:
    if cell.value is None:
        return "-"
    if kind is FigureKind.SHARE:
        return f"{cell.value:.1%} ({cell.hits}/{cell.total})"
    if kind is FigureKind.SIMILARITY:
        return f"{cell.value:.3f}"
    return f"{cell.value:.2f}"


def _format_change(change: float | None, kind: FigureKind) -> str:
    if change is None:
        return "-"
    if kind is FigureKind.SHARE:
        return f"{change * 100:+.1f} pt"
    if kind is FigureKind.SIMILARITY:
        return f"{change:+.3f}"
    return f"{change:+.2f}"


def render_table(comparison: Comparison) -> str:
    labels = list(comparison.columns)
    header = [labels[0]]
    for label in labels[1:]:
        header += [label, "change"]
    lines: list[tuple[str, list[str]]] = []
    section = None
    for row in comparison.rows:
        if row.section != section:
            section = row.section
            lines.append((section, [""] * len(header)))
        cells = [_format_value(row.cells[labels[0]], row.kind)]
        for label in labels[1:]:
            cells += [
                _format_value(row.cells[label], row.kind),
                _format_change(row.changes[label], row.kind),
            ]
        lines.append((f"  {row.figure}", cells))

    first = max(len(name) for name, _ in lines)
    widths = [max(len(h), *(len(c[i]) for _, c in lines)) for i, h in enumerate(header)]

    def line(name: str, cells: list[str]) -> str:
        parts = [name.ljust(first), *(c.rjust(w) for c, w in zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    rule = "-" * (first + sum(w + 2 for w in widths))
    legend = (
        "change: fine-tuned minus base (accuracy in percentage points); lower perplexity is better"
    )
    return "\n".join([line("", header), rule, *(line(n, c) for n, c in lines), "", legend])
