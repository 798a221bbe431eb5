"""One model on the held-out examples: the answers the worker would serve, scored three ways.

- exact-fact accuracy: the share of examples (those that list facts) whose answer states every
  fact (``facts``), overall and per language;
- semantic similarity: mean cosine between answer and reference answer, with the product's
  embedder (``CHATQ_EMBEDDING_MODEL``, as ``chatq eval --similarity`` measures it);
- perplexity of the reference answers given their prompts (answer tokens only), on the PyTorch
  reference model, overall and per language.

The prompts are the worker's (its system prompt unless the example brings one, its token
budget), built once and used for both the answers and the perplexity.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, computed_field
from tqdm import tqdm

from chatq.evaluation.scoring import EmbeddingSimilarity, Similarity
from services.worker.engine import GenerationResult
from shared.config import Settings, get_settings
from shared.logs import get_logger
from shared.model_layout import ModelLayout
from training.data.examples import ChatExample
from training.evaluation.answers import (
    generate_answers,
    load_serving_engine,
    serving_messages,
    serving_prompts,
)
from training.evaluation.facts import fact_pattern, facts_stated
from training.evaluation.perplexity import (
    AnswerLoss,
    answer_losses,
    corpus_perplexity,
    load_reference_model,
)

log = get_logger(__name__)

Message = dict[str, str]


class Share(BaseModel):
    hits: int
    total: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rate(self) -> float | None:
        return self.hits / self.total if self.total else None


class ExampleRecord(BaseModel):
    index: int  # position in the evaluated list
    lang: str
    question: str
    answer: str  # what the model said
    answer_tokens: int  # tokens it took (its end token included)
    reference: str
    facts: list[str]
    facts_hit: list[str]
    finish_reason: str  # "stop", "length" (cut at max_new_tokens) or "error"
    error: str | None = None
    similarity: float  # 0.0 for a blank answer: nothing was said
    perplexity: float  # of the reference answer
    reference_tokens: int  # tokens of the reference answer scored for perplexity

    @computed_field  # type: ignore[prop-decorator]
    @property
    def states_all_facts(self) -> bool | None:
        """``None`` for an example that lists no facts (it does not count for accuracy)."""
        return len(self.facts_hit) == len(self.facts) if self.facts else None


class HeldOutScores(BaseModel):
    model_dir: str
    model_name: str
    engine: str  # "onnxruntime" or "pytorch", and the variant
    examples: int
    max_new_tokens: int
    fact_accuracy: Share
    fact_accuracy_by_lang: dict[str, Share]
    similarity: float
    similarity_by_lang: dict[str, float]
    perplexity: float | None
    perplexity_by_lang: dict[str, float]
    engine_load_s: float  # loading the serving engine (first import of its libraries included)
    generation_s: float  # answering every example, once loaded
    perplexity_s: float  # loading the PyTorch model and scoring every reference
    similarity_s: float
    records: list[ExampleRecord]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def generation_s_per_example(self) -> float | None:
        return round(self.generation_s / self.examples, 3) if self.examples else None


def _check(examples: Sequence[ChatExample]) -> None:
    if not examples:
        raise ValueError("no held-out examples to evaluate")
    for number, example in enumerate(examples):
        if not example.answer.strip():
            raise ValueError(f"held-out example {number} has a blank reference answer")
        for fact in example.facts:
            try:
                fact_pattern(fact)
            except ValueError as error:
                raise ValueError(f"held-out example {number}: {error}") from None


@dataclass(frozen=True)
class _Served:
    conversations: list[list[Message]]  # the prompts the worker would build
    results: list[GenerationResult]
    engine: str
    load_s: float
    generation_s: float


def _answers(
    model_dir: Path,
    examples: Sequence[ChatExample],
    settings: Settings,
    max_new_tokens: int,
    progress: bool,
) -> _Served:
    started = time.perf_counter()
    engine = load_serving_engine(model_dir, settings)
    loaded = time.perf_counter()
    prompts = serving_prompts(engine, settings)
    conversations = []
    for number, example in enumerate(examples):
        try:
            conversations.append(serving_messages(example, prompts))
        except ValueError as error:
            raise ValueError(f"held-out example {number}: {error}") from None
    results = generate_answers(
        engine,
        conversations,
        max_new_tokens=max_new_tokens,
        batch_size=settings.max_batch_size,
        progress=progress,
    )
    return _Served(
        conversations,
        results,
        f"{engine.info.name}:{engine.info.variant}",
        load_s=loaded - started,
        generation_s=time.perf_counter() - loaded,
    )


def _similarities(
    similarity: Similarity, answers: Sequence[str], references: Sequence[str], progress: bool
) -> list[float]:
    pairs = tqdm(
        zip(answers, references, strict=True),
        total=len(answers),
        desc="similarity",
        unit="example",
        disable=not progress,
    )
    # a blank answer says nothing: it is as far from the reference as an answer can be judged
    return [similarity.similarity(a, r) if a.strip() else 0.0 for a, r in pairs]


def _by_lang(langs: Sequence[str], values: Iterable[float]) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for lang, value in zip(langs, values, strict=True):
        groups[lang].append(value)
    return {lang: round(statistics.fmean(groups[lang]), 4) for lang in sorted(groups)}


def _share(records: Sequence[ExampleRecord]) -> Share:
    return Share(hits=sum(bool(r.states_all_facts) for r in records), total=len(records))


def _fact_accuracy(records: Sequence[ExampleRecord]) -> tuple[Share, dict[str, Share]]:
    judged = [r for r in records if r.states_all_facts is not None]
    langs = sorted({r.lang for r in judged})
    return _share(judged), {lang: _share([r for r in judged if r.lang == lang]) for lang in langs}


def _perplexity_by_lang(langs: Sequence[str], losses: Sequence[AnswerLoss]) -> dict[str, float]:
    figures = {}
    for lang in sorted(set(langs)):
        of_lang = [loss for loss, of in zip(losses, langs, strict=True) if of == lang]
        if (value := corpus_perplexity(of_lang)) is not None:
            figures[lang] = round(value, 4)
    return figures


def _reference_losses(
    model_dir: Path,
    conversations: Sequence[list[Message]],
    references: Sequence[str],
    settings: Settings,
    progress: bool,
) -> list[AnswerLoss]:
    model, tokenizer = load_reference_model(
        ModelLayout(model_dir).pytorch_dir, settings.intra_op_threads
    )
    return answer_losses(
        model, tokenizer, conversations, references, batch_size=settings.max_batch_size,
        progress=progress,
    )  # fmt: skip


def _records(
    examples: Sequence[ChatExample],
    served: _Served,
    similarities: Sequence[float],
    losses: Sequence[AnswerLoss],
) -> list[ExampleRecord]:
    return [
        ExampleRecord(
            index=number,
            lang=example.lang,
            question=conversation[-1]["content"],
            answer=result.text,
            answer_tokens=result.completion_tokens,
            reference=example.answer,
            facts=list(example.facts),
            facts_hit=facts_stated(result.text, example.facts),
            finish_reason=result.finish_reason,
            error=result.error.message if result.error else None,
            similarity=round(cosine, 4),
            perplexity=round(loss.perplexity, 4),
            reference_tokens=loss.tokens,
        )
        for number, (example, conversation, result, cosine, loss) in enumerate(
            zip(examples, served.conversations, served.results, similarities, losses, strict=True)
        )
    ]


def evaluate_model(
    model_dir: Path,
    examples: list[ChatExample],
    *,
    max_new_tokens: int = 96,
    similarity: Similarity | None = None,
    progress: bool = True,
) -> HeldOutScores:
    """Score the model built in ``model_dir`` on ``examples`` (see the module docstring).

    ``similarity``: how to compare an answer with its reference; by default the embedder the
    product is configured with (``CHATQ_EMBEDDING_MODEL``).
    """
    settings = get_settings()
    manifest = ModelLayout(model_dir).require_manifest()
    _check(examples)
    judge = similarity or EmbeddingSimilarity(settings.embedding_model)
    log.info("held_out_evaluation_started", model_dir=str(model_dir), examples=len(examples))
    references = [example.answer for example in examples]

    served = _answers(model_dir, examples, settings, max_new_tokens, progress)
    started = time.perf_counter()
    losses = _reference_losses(model_dir, served.conversations, references, settings, progress)
    perplexity_s = time.perf_counter() - started
    started = time.perf_counter()
    answers = [result.text for result in served.results]
    similarities = _similarities(judge, answers, references, progress)
    similarity_s = time.perf_counter() - started

    records = _records(examples, served, similarities, losses)
    langs = [example.lang for example in examples]
    accuracy, accuracy_by_lang = _fact_accuracy(records)
    perplexity = corpus_perplexity(losses)
    scores = HeldOutScores(
        model_dir=str(model_dir),
        model_name=manifest.name,
        engine=served.engine,
        examples=len(examples),
        max_new_tokens=max_new_tokens,
        fact_accuracy=accuracy,
        fact_accuracy_by_lang=accuracy_by_lang,
        similarity=round(statistics.fmean(similarities), 4),
        similarity_by_lang=_by_lang(langs, similarities),
        perplexity=None if perplexity is None else round(perplexity, 4),
        perplexity_by_lang=_perplexity_by_lang(langs, losses),
        engine_load_s=round(served.load_s, 3),
        generation_s=round(served.generation_s, 3),
        perplexity_s=round(perplexity_s, 3),
        similarity_s=round(similarity_s, 3),
        records=records,
    )
    log.info(
        "held_out_evaluated",
        model_dir=str(model_dir),
        examples=len(examples),
        fact_accuracy=accuracy.rate,
        similarity=scores.similarity,
        perplexity=scores.perplexity,
        generation_s_per_example=scores.generation_s_per_example,
    )
    return scores
