"""What a run scored: accuracy overall, per kind, per language and per route (the route of the
scored answer), the route mix, several runs side by side, and the JSON record of it all."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chatq.evaluation.questions import Lang, QuestionKind, QuestionSet
from chatq.evaluation.runner import Result

NO_ROUTE = "(none)"
"""The route of an item that got no answer (failed, expired, timed out)."""
ROUTE_ORDER = ("rule", "faq", "cache", "knowledge", "llm", "fallback", "moderation")


@dataclass(frozen=True)
class Tally:
    correct: int = 0
    total: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None

    def cell(self) -> str:
        if not self.total:
            return "-"
        return f"{self.correct / self.total:.1%} ({self.correct}/{self.total})"

    def to_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "total": self.total, "accuracy": self.accuracy}


@dataclass(frozen=True)
class RunSummary:
    label: str
    overall: Tally
    by_kind: dict[str, Tally]
    by_lang: dict[str, Tally]
    by_route: dict[str, Tally]
    route_mix: dict[str, float]
    """Share of all items answered by each route (``(none)``: no answer)."""
    not_completed: int
    handoffs: int
    mean_similarity: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None

    @property
    def accuracy(self) -> float:
        return self.overall.accuracy or 0.0

    def to_dict(self) -> dict[str, Any]:
        def tallies(groups: Mapping[str, Tally]) -> dict[str, Any]:
            return {name: tally.to_dict() for name, tally in groups.items()}

        return {
            "label": self.label,
            "overall": self.overall.to_dict(),
            "by_kind": tallies(self.by_kind),
            "by_lang": tallies(self.by_lang),
            "by_route": tallies(self.by_route),
            "route_mix": self.route_mix,
            "not_completed": self.not_completed,
            "handoffs": self.handoffs,
            "mean_similarity": self.mean_similarity,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
        }


def _route(result: Result) -> str:
    return result.route or NO_ROUTE


def _route_key(route: str) -> tuple[int, str]:
    if route in ROUTE_ORDER:
        return ROUTE_ORDER.index(route), route
    return (len(ROUTE_ORDER) + (route == NO_ROUTE), route)


def _tally(results: Iterable[Result], key: Callable[[Result], str]) -> dict[str, Tally]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for result in results:
        count = counts[key(result)]
        count[0] += result.correct
        count[1] += 1
    return {name: Tally(correct, total) for name, (correct, total) in counts.items()}


def _ordered(groups: dict[str, Tally], order: Sequence[str]) -> dict[str, Tally]:
    return {name: groups[name] for name in order if name in groups}


def _percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return round(cuts[round(fraction * 100) - 1], 1)


def summarise(label: str, results: Sequence[Result]) -> RunSummary:
    total = len(results)
    routes = sorted({_route(r) for r in results}, key=_route_key)
    mix = Counter(_route(r) for r in results)
    similarities = [r.score.similarity for r in results if r.score.similarity is not None]
    latencies = [r.latency_ms for r in results if r.latency_ms is not None]
    return RunSummary(
        label=label,
        overall=Tally(sum(r.correct for r in results), total),
        by_kind=_ordered(
            _tally(results, lambda r: r.question.kind.value), [k.value for k in QuestionKind]
        ),
        by_lang=_ordered(
            _tally(results, lambda r: r.question.lang.value), [lang.value for lang in Lang]
        ),
        by_route=_ordered(_tally(results, _route), routes),
        route_mix={route: mix[route] / total for route in routes},
        not_completed=sum(r.status != "completed" for r in results),
        handoffs=sum(r.handoff for r in results),
        mean_similarity=round(statistics.fmean(similarities), 4) if similarities else None,
        latency_p50_ms=_percentile(latencies, 0.50),
        latency_p95_ms=_percentile(latencies, 0.95),
    )


def _union(groups: Iterable[Mapping[str, Any]], key: Callable[[str], Any] = str) -> list[str]:
    names: dict[str, None] = {}
    for group in groups:
        names.update(dict.fromkeys(group))
    return sorted(names, key=key)


def comparison_table(summaries: Sequence[RunSummary]) -> str:
    """One row per figure, one column per run (``model`` beside ``router``, say)."""
    kind_order = [k.value for k in QuestionKind]
    lang_order = [lang.value for lang in Lang]
    rows: list[tuple[str, list[str]]] = [("accuracy", [s.overall.cell() for s in summaries])]
    for kind in _union((s.by_kind for s in summaries), kind_order.index):
        rows.append((f"  kind {kind}", [s.by_kind.get(kind, Tally()).cell() for s in summaries]))
    for lang in _union((s.by_lang for s in summaries), lang_order.index):
        rows.append((f"  lang {lang}", [s.by_lang.get(lang, Tally()).cell() for s in summaries]))
    routes = _union((s.by_route for s in summaries), _route_key)
    for route in routes:
        cells = [s.by_route.get(route, Tally()).cell() for s in summaries]
        rows.append((f"  route {route}", cells))
    rows.append(("route mix", ["" for _ in summaries]))
    for route in routes:
        rows.append((f"  {route}", [f"{s.route_mix.get(route, 0.0):.0%}" for s in summaries]))
    rows.append(("not completed", [str(s.not_completed) for s in summaries]))
    rows.append(("handoffs", [str(s.handoffs) for s in summaries]))
    if any(s.mean_similarity is not None for s in summaries):
        rows.append(
            (
                "similarity (mean)",
                [
                    "-" if s.mean_similarity is None else f"{s.mean_similarity:.3f}"
                    for s in summaries
                ],
            )
        )
    for name, attribute in (("latency p50", "latency_p50_ms"), ("latency p95", "latency_p95_ms")):
        values = [getattr(s, attribute) for s in summaries]
        rows.append((name, ["-" if v is None else f"{v:,.0f} ms" for v in values]))

    header = ("", [s.label for s in summaries])
    first = max(len(name) for name, _ in [header, *rows])
    widths = [max(len(cells[i]) for _, cells in [header, *rows]) for i in range(len(summaries))]

    def line(name: str, cells: list[str]) -> str:
        return "  ".join(
            [name.ljust(first), *(c.rjust(w) for c, w in zip(cells, widths, strict=True))]
        ).rstrip()

    rule = "-" * (first + sum(w + 2 for w in widths))
    return "\n".join([line(*header), rule, *(line(name, cells) for name, cells in rows)])


def _shorten(text: str | None, width: int) -> str:
    if text is None:
        return "(no answer)"
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def incorrect_answers(results: Sequence[Result], width: int = 160) -> str:
    """The items scored incorrect: id, question, answer (truncated) and what was wrong."""
    lines = []
    for result in results:
        if result.correct:
            continue
        question = result.question
        lines.append(
            f"{question.id} [{question.kind}/{question.lang}] "
            f"route={_route(result)} status={result.status}"
        )
        for number, turn in enumerate(question.turns, start=1):
            lines.append(f"  turn {number}: {_shorten(turn, width)}")
        lines.append(f"  Q: {_shorten(question.question, width)}")
        lines.append(f"  A: {_shorten(result.answer, width)}")
        for group in result.score.missing:
            lines.append(f"  missing: {' | '.join(group)}")
        for pattern in result.score.forbidden:
            lines.append(f"  forbidden: {pattern}")
        if result.error:
            lines.append(f"  error: {result.error}")
    return "\n".join(lines)


def result_record(result: Result) -> dict[str, Any]:
    question = result.question
    return {
        "id": question.id,
        "kind": question.kind.value,
        "lang": question.lang.value,
        "turns": question.turns,
        "question": question.question,
        "correct": result.correct,
        "missing": result.score.missing,
        "forbidden": result.score.forbidden,
        "similarity": result.score.similarity,
        "status": result.status,
        "answer": result.answer,
        "route": result.route,
        "sources": result.sources,
        "intent": result.intent,
        "handoff": result.handoff,
        "latency_ms": result.latency_ms,
        "timings": result.timings,
        "job_ids": result.job_ids,
        "turn_answers": result.turn_answers,
        "error": result.error,
    }


def report_record(
    question_set: QuestionSet,
    runs: Mapping[str, Sequence[Result]],
    **context: Any,
) -> dict[str, Any]:
    """The whole evaluation as one JSON-ready object; ``context`` (file, URL, settings) is
    recorded as given."""
    return {
        "benchmark": "eval",
        "name": question_set.name,
        "at": datetime.now(UTC).isoformat(),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        **context,
        "questions": len(question_set.questions),
        "runs": {
            label: {
                "summary": summarise(label, results).to_dict(),
                "results": [result_record(r) for r in results],
            }
            for label, results in runs.items()
        },
    }


def write_report(path: Path, record: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
