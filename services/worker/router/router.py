"""The router: what answers a job, decided before the batcher so that the model sees only what
needs it.

    input moderation (a seam) → intents and rules → FAQ → answer cache → knowledge → fallback

- Intents: a rule (pattern or keyword) or an example above the intent threshold runs the
  intent's handler (template, http look-up, handoff).
- FAQ: a question close enough to an FAQ question (or one of its wordings) gets the stored
  answer verbatim.
- Answer cache: the same question, same knowledge version, same model → the earlier answer.
- Knowledge: the best chunks above the thresholds answer; extractively by default (the best
  passage's relevant sentences: a 135M model garbles what it is given, and writes no Chinese),
  or by the model from those chunks (``CHATQ_KNOWLEDGE_ANSWER=generate``).
- Nothing relevant: the tenant's fallback answer (don't know + how to reach a person), or the
  model alone where the tenant turned that on.

Follow-ups are resolved with the conversation: retrieval also searches with the previous
customer turn joined to the question, so "and if I order at 3 pm?" after a shipping question
finds the shipping facts; and an elliptical follow-up about a detail of the previous answer
("it already shipped yesterday though" after the cancellation policy) gets that sentence of
the tenant's own answer again (``recall``), when nothing found matches it better.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from services.worker.knowledge.extractive import best_sentence, extract_answer, passage_sentences
from services.worker.knowledge.index import Hit
from services.worker.router.answer_cache import AnswerCache, CachedAnswer, cache_key
from services.worker.router.follow_up import is_elliptical
from services.worker.router.handlers import RuleHandlers
from services.worker.router.intents import previous_answer, previous_user_turn, recognise
from services.worker.router.recall import normalised, trace_told
from services.worker.router.tenant_knowledge import (
    FaqRecord,
    KnowledgeRegistry,
    TenantKnowledge,
)
from shared.config import KnowledgeAnswerMode
from shared.knowledge.schemas import LocalizedText
from shared.knowledge.text import detect_language
from shared.messaging.schemas import ChatTurn, IntentMatch, Route, Source
from shared.metrics import ROUTE_LATENCY, ROUTES, observe_moderation

DEFAULT_FALLBACK = LocalizedText(
    en=(
        "I'm sorry, I don't have information about that. Please contact our customer service "
        "team, who will be glad to help."
    ),
    zh="抱歉，我暂时没有这方面的信息。请联系我们的人工客服，他们会很乐意为您解答。",
)

# What introduces a passage that came close to answering, after the fallback answer.
RELATED_LEAD = LocalizedText(
    en="This is the closest I found in our information, in case it helps:",
    zh="以下是我们资料中最接近的内容，供您参考：",
)

LANGUAGE_NAMES = {"en": "English", "zh": "Chinese (简体中文)"}

KNOWLEDGE_INSTRUCTIONS = (
    "Answer the customer's question using only the facts below. Answer in {language}, in one "
    "to three sentences. If the facts do not answer the question, say that you do not know and "
    "suggest contacting customer service.\n\nFacts:\n{facts}"
)

# The reading of a follow-up that comes second scores slightly below the first: the question
# on its own first, so that one standing alone keeps its own topic, unless it is elliptical
# (then the conversation first).
CONTEXT_DISCOUNT = 0.98

# FAQ wordings searched for the entries compared by question and answer together
FAQ_CANDIDATES = 40

# An FAQ entry ranked this close to the best one (wording plus answer cosine, so on a scale of
# two) answers with it. Over the example businesses' single-turn FAQ answers, two wrong Chinese
# ones tied with their runner-up within 0.0005 (once the runner-up was right), while every right
# answer but one led its runner-up by 0.017 or more (that one, at 0.008, now comes with its
# runner-up's answer and stays right).
FAQ_TIE = 0.01

# A sentence of the previous answer is said again for an elliptical follow-up when it is
# closer to it than every sentence of the best RECALL_RIVALS passages found by this much.
# On both example businesses' follow-ups, the recalled sentences that answered led by
# 0.019-0.023; where the new passage was the right answer, a previous sentence led by at
# most 0.004 (README, "Knowledge and routing").
RECALL_MARGIN = 0.01
RECALL_RIVALS = 3


@dataclass(frozen=True)
class FaqCandidate:
    hit: Hit  # the entry's closest wording
    entry: FaqRecord
    rank: float  # the wording's cosine plus the question's cosine to the entry's answer


@dataclass(frozen=True)
class RoutedAnswer:
    """Answered without the model."""

    route: Route
    response: str
    sources: list[Source] = field(default_factory=list)
    intent: IntentMatch | None = None
    handoff: bool = False
    route_ms: float = 0.0
    moderation: dict[str, Any] | None = None  # what input moderation found


@dataclass(frozen=True)
class ModelTask:
    """The model answers: from retrieved knowledge (``system_prompt`` holds the facts), or
    alone (``None``: the configured system prompt). The worker's prompt builder adds the
    conversation within the token budget."""

    route: Route
    system_prompt: str | None
    sources: list[Source] = field(default_factory=list)
    cache_key: str | None = None
    route_ms: float = 0.0
    moderation: dict[str, Any] | None = None  # what input moderation found
    query: str | None = None  # the question as the model sees it (masked); None: as submitted


@dataclass(frozen=True)
class Thresholds:
    """Calibrated on the example businesses' eval sets (see the README, "Routing")."""

    intent: float
    faq: float  # an FAQ question this close answers, if no passage is closer
    faq_sure: float  # an FAQ question this close answers whatever else matches
    faq_margin: float  # how much closer than the best passage the FAQ question must be
    knowledge: float  # dense + lexical_weight * lexical coverage a passage needs (English)
    knowledge_zh: float  # the same for Chinese questions
    knowledge_lexical_weight: float
    # the most lexical coverage adds to the best passage's evidence that it answers
    knowledge_lexical_cap: float
    second_passage: float  # a runner-up passage this close in score joins the answer
    # a best passage this far below the knowledge threshold follows the fallback answer as
    # possibly related (0: never)
    related_passage: float = 0.0


@dataclass
class RouterInput:
    query: str
    history: Sequence[ChatTurn]  # stored transcript + the job's own history, oldest first
    signing_secret: str | None  # the submitting key's webhook secret (signs rule calls)
    greedy: bool = True  # a sampled generation is not cached


@dataclass
class Router:
    registry: KnowledgeRegistry
    cache: AnswerCache
    handlers: RuleHandlers
    thresholds: Thresholds
    model_name: str
    knowledge_answer: KnowledgeAnswerMode = KnowledgeAnswerMode.EXTRACTIVE
    top_k: int = 3

    def route(self, tenant: TenantKnowledge, job: RouterInput) -> RoutedAnswer | ModelTask:
        started = time.perf_counter()
        lang = _language(job.query, job.history)
        # input moderation first: a blocked question reaches neither the rules nor the model
        screened = tenant.safety.moderator.check(job.query, stage="input", lang=lang)
        if screened.flagged:
            observe_moderation("input", screened.action, screened.categories)
        decision: RoutedAnswer | ModelTask
        if screened.action == "block":
            decision = RoutedAnswer("moderation", tenant.safety.safe_answer_for(lang))
        else:
            masked = screened.text != job.query
            decision = self._decide(tenant, replace(job, query=screened.text) if masked else job)
            if masked and isinstance(decision, ModelTask):
                decision = replace(decision, query=screened.text)
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        ROUTES.labels(decision.route).inc()
        ROUTE_LATENCY.observe(elapsed / 1000)
        return replace(decision, route_ms=elapsed, moderation=screened.as_job_field())

    def _decide(self, tenant: TenantKnowledge, job: RouterInput) -> RoutedAnswer | ModelTask:
        query = job.query
        lang = _language(query, job.history)

        previous = previous_user_turn(job.history)
        context_query = f"{previous}\n{query}" if previous else None
        candidates: list[Hit] = []
        query_vector: np.ndarray | None = None
        context_vector: np.ndarray | None = None
        if tenant.has_knowledge:
            # one embedder call for all the wordings the steps below compare
            texts = [query] + ([previous, context_query] if previous and context_query else [])
            vectors = self.registry.embed_queries(texts)
            query_vector = vectors[0]
            previous_vector = vectors[1] if previous else None
            context_vector = vectors[2] if previous else None

            answered = self._intent(tenant, job, lang, query_vector, previous_vector)
            if answered is not None:
                return answered
            # an elliptical follow-up ("运费谁出？") is asked with the conversation first
            elliptical = context_vector is not None and is_elliptical(query)
            candidates = self._retrieve(
                tenant, query, query_vector, context_query, context_vector, lang, elliptical
            )
            # an elliptical follow-up asks for something more: the FAQ answer the customer was
            # just given never answers it (a question asked again may get it again)
            told = _said(previous_answer(job.history)) if elliptical else None
            # ... and is matched to the FAQ as it is meant, with the conversation: "运费谁出？"
            # alone is the shipping-fee question, after "我想退货" it is not
            faq_query, faq_vector = (
                (context_query, context_vector)
                if elliptical and context_query is not None and context_vector is not None
                else (query, query_vector)
            )
            answered = self._faq(
                tenant, faq_query, faq_vector, lang, candidates, follow_up=bool(previous), told=told
            )
            if answered is not None:
                return answered
            if elliptical and context_query is not None and context_vector is not None:
                recalled = self._recall(
                    tenant, previous_answer(job.history), context_query, context_vector, candidates
                )
                if recalled is not None:
                    return recalled

        key = None
        # only answers drawn from documents are cached: without any, a look-up (a database
        # read on every miss) cannot find anything
        if not job.history and self.cache.enabled and tenant.chunk_index is not None:
            key = cache_key(tenant.version, self.model_name, lang, query)
            cached = self.cache.get(tenant.tenant_id, key)
            if cached is not None:
                return RoutedAnswer(
                    "cache",
                    cached.response,
                    [Source.model_validate(s) for s in cached.sources],
                )

        hits = answering_passages(
            candidates, lambda hit: self._answers(hit, lang), lambda hit: self._relevant(hit, lang)
        )
        if hits:
            sources = self._document_sources(tenant, hits)
            if self.knowledge_answer is KnowledgeAnswerMode.GENERATE:
                facts = self._knowledge_instructions(tenant, hits[: self.top_k], lang)
                return ModelTask("knowledge", facts, sources, key if job.greedy else None)
            # the sentences are chosen by the reading the passages were found with
            extraction_vector = context_vector if context_query else query_vector
            answer = self._extract(tenant, hits, context_query or query, extraction_vector, sources)
            self._remember(tenant, key, answer)
            return answer

        if tenant.settings.llm_fallback:
            # the model alone is not cached: its answers are not grounded in the knowledge
            # the version stands for, and sampled answers are meant to differ
            return ModelTask("llm", None, [], None)
        return self._fallback(
            tenant,
            candidates,
            lang,
            context_query or query,
            context_vector if context_query else query_vector,
        )

    # --- the steps ------------------------------------------------------------------------------

    def _intent(
        self,
        tenant: TenantKnowledge,
        job: RouterInput,
        lang: str,
        query_vector: np.ndarray,
        previous_vector: np.ndarray | None,
    ) -> RoutedAnswer | None:
        recognised = recognise(
            tenant.intents, job.query, query_vector, job.history, previous_vector
        )
        if recognised is None:
            return None
        answer = self.handlers.answer(recognised, lang, job.signing_secret)
        return RoutedAnswer(
            "rule",
            answer.text,
            [
                Source(
                    kind="intent",
                    id=recognised.intent.name,
                    title=recognised.intent.title,
                    score=recognised.confidence,
                )
            ],
            IntentMatch(
                name=recognised.intent.name,
                confidence=recognised.confidence,
                slots=recognised.slots,
            ),
            answer.handoff,
        )

    def _faq(
        self,
        tenant: TenantKnowledge,
        query: str,
        vector: np.ndarray,
        lang: str,
        passages: Sequence[Hit],
        follow_up: bool = False,
        told: str | None = None,
    ) -> RoutedAnswer | None:
        """The stored answer of the closest FAQ question, when it is close enough and closer
        than any document passage (a question matches a question more closely than it matches
        a passage, so a document fact wins only when its passage is at least as close).
        A follow-up is answered from the FAQ only when it matches a question outright: "and
        what about headphones?" alone resembles many FAQ questions."""
        if tenant.faq_index is None or tenant.faq_answer_vectors is None:
            return None  # no FAQ (the two are built together)
        # answer in the question's language when the tenant has FAQ entries in it
        same_language_only = lang in tenant.faq_languages()
        eligible = [
            candidate
            for candidate in self._faq_candidates(tenant, query, vector, lang)
            if not (same_language_only and candidate.entry.lang not in (None, lang))
            and not (told is not None and _said(candidate.entry.answer) == told)
        ]
        if not eligible:
            return None
        best, runners_up = eligible[0], eligible[1:]
        sure = best.hit.dense >= self.thresholds.faq_sure
        best_passage = max((p.dense for p in passages), default=0.0)
        likely = (
            not follow_up
            and best.hit.dense >= self.thresholds.faq
            and best.hit.dense >= best_passage + self.thresholds.faq_margin
        )
        if not (sure or likely):
            return None
        answering = [best]
        # two entries that tie are both answered: which one the customer means, the embedder
        # cannot tell ("收到两天了，不太喜欢，能退吗" is as close to the faulty-item exchange as to
        # the no-reason return); an entry stored twice is not said twice
        runner_up = next(
            (c for c in runners_up if _said(c.entry.answer) != _said(best.entry.answer)), None
        )
        if (
            runner_up is not None
            and runner_up.rank >= best.rank - FAQ_TIE
            and runner_up.hit.dense >= self.thresholds.faq
        ):
            answering.append(runner_up)
        sources = [
            Source(
                kind="faq",
                id=candidate.entry.faq_id,
                title=candidate.entry.question,
                score=round(candidate.hit.dense, 4),
            )
            for candidate in answering
        ]
        return RoutedAnswer(
            "faq", "\n\n".join(candidate.entry.answer for candidate in answering), sources
        )

    def _faq_candidates(
        self, tenant: TenantKnowledge, query: str, vector: np.ndarray, lang: str
    ) -> list[FaqCandidate]:
        """The closest wording of each FAQ entry, best entry first by its wording's cosine plus
        the question's cosine to the entry's answer: "how does my mum get online?" is about
        as close to the eduroam and the guest Wi-Fi questions, but the guest Wi-Fi answer is
        the one about visitors. The thresholds still apply to the wording's cosine."""
        assert tenant.faq_index is not None and tenant.faq_answer_vectors is not None
        hits = tenant.faq_index.search(query, vector, k=FAQ_CANDIDATES, prefer_lang=lang)
        closest: dict[int, Hit] = {}
        for hit in hits:
            owner = tenant.faq_wording_owner[hit.position]
            if owner not in closest or closest[owner].dense < hit.dense:
                closest[owner] = hit
        answers = tenant.faq_answer_vectors @ vector
        return sorted(
            (
                FaqCandidate(hit, tenant.faq[owner], hit.dense + float(answers[owner]))
                for owner, hit in closest.items()
            ),
            key=lambda candidate: candidate.rank,
            reverse=True,
        )[:5]

    def _retrieve(
        self,
        tenant: TenantKnowledge,
        query: str,
        vector: np.ndarray,
        context_query: str | None,
        context_vector: np.ndarray | None,
        lang: str,
        elliptical: bool = False,
    ) -> list[Hit]:
        """Document passages best first, in the question's language where the tenant has
        any, searched with the question and (for a follow-up) with the previous turn joined
        in; ``dense`` and ``score`` carry the discount of the reading that comes second (the
        conversation's, unless the follow-up is elliptical)."""
        index = tenant.chunk_index
        if index is None:
            return []
        same_language_only = lang in tenant.chunk_languages()
        best: dict[int, Hit] = {}
        searches = [(query, vector, CONTEXT_DISCOUNT if elliptical else 1.0)]
        if context_query is not None and context_vector is not None:
            weight = 1.0 if elliptical else CONTEXT_DISCOUNT
            searches.append((context_query, context_vector, weight))
        for text, query_vector, weight in searches:
            for hit in index.search(text, query_vector, k=10, prefer_lang=lang):
                chunk = tenant.chunks[hit.position]
                if same_language_only and chunk.lang not in (None, lang):
                    continue
                scored = Hit(hit.position, hit.score * weight, hit.dense * weight, hit.lexical)
                if hit.position not in best or best[hit.position].score < scored.score:
                    best[hit.position] = scored
        return sorted(best.values(), key=lambda h: h.score, reverse=True)

    def _recall(
        self,
        tenant: TenantKnowledge,
        said: str | None,
        question: str,
        vector: np.ndarray,
        passages: Sequence[Hit],
    ) -> RoutedAnswer | None:
        """An elliptical follow-up about something the customer has just been told ("it
        already shipped yesterday though" after the cancellation answer, which says what
        happens once an order has shipped; "周末也有人吗？" after the service hours, which
        include weekends) gets that one sentence again, when it matches the follow-up (read
        with the conversation) better than any sentence of the passages found by
        ``RECALL_MARGIN``. Only the tenant's own words are said again (``trace_told``)."""
        told = trace_told(tenant, said) if said else None
        if told is None:
            return None
        sentences = told.sentences
        vectors = self._sentence_vectors(tenant, sentences)
        best = best_sentence(question, sentences, lambda s: float(vectors[s] @ vector))
        if best is None:
            return None
        score = float(vectors[best] @ vector)
        rival = max(
            (
                float(known @ vector)
                for hit in passages[:RECALL_RIVALS]
                for sentence in passage_sentences(tenant.section_text(hit.position))
                if (known := tenant.sentence_vectors.get(sentence)) is not None
            ),
            default=-1.0,
        )
        if score < rival + RECALL_MARGIN:
            return None
        source = told.source
        if source is None:
            chunk = tenant.chunks[tenant.sentence_chunks[best]]
            source = Source(kind="document", id=chunk.document_id, title=chunk.title, score=0.0)
        return RoutedAnswer(
            told.route, best, [source.model_copy(update={"score": round(score, 4)})]
        )

    def _sentence_vectors(
        self, tenant: TenantKnowledge, sentences: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """The sentences' vectors (as passages): a document sentence's from the index, an FAQ
        or intent answer's embedded the first time it is asked for and kept with the tenant."""
        unknown = [
            s
            for s in dict.fromkeys(sentences)
            if s not in tenant.sentence_vectors and s not in tenant.answer_sentence_vectors
        ]
        if unknown:
            for sentence, vector in zip(
                unknown, self.registry.embed_passages(unknown), strict=True
            ):
                tenant.answer_sentence_vectors[sentence] = vector
        return {
            s: known
            if (known := tenant.sentence_vectors.get(s)) is not None
            else tenant.answer_sentence_vectors[s]
            for s in sentences
        }

    def _needed(self, lang: str) -> float:
        return self.thresholds.knowledge_zh if lang == "zh" else self.thresholds.knowledge

    def _answers(self, hit: Hit, lang: str) -> bool:
        """The best passage answers: as ``_relevant``, but its lexical coverage adds at most
        ``knowledge_lexical_cap``. Words shared with the question show a passage's topic, not
        that it answers: "can I wear the buds air while swimming?" shares the product's name
        with its pairing steps (cosine 0.835, coverage 0.39). Such a passage, far below the
        threshold by meaning, is offered after the fallback answer instead, as a related passage
        when ``related_passage`` allows (``_fallback``)."""
        lexical = self.thresholds.knowledge_lexical_weight * hit.lexical
        evidence = hit.dense + min(lexical, self.thresholds.knowledge_lexical_cap)
        return evidence >= self._needed(lang)

    def _relevant(self, hit: Hit, lang: str, slack: float = 0.0) -> bool:
        """A passage on the question's topic: its cosine with its lexical coverage added.
        Enough for a runner-up to join an answer, or to be offered after the fallback."""
        evidence = hit.dense + self.thresholds.knowledge_lexical_weight * hit.lexical
        return evidence >= self._needed(lang) - slack

    def _fallback(
        self,
        tenant: TenantKnowledge,
        candidates: Sequence[Hit],
        lang: str,
        question: str,
        vector: np.ndarray | None,
    ) -> RoutedAnswer:
        """The tenant's don't-know answer; followed by the closest passage, marked as possibly
        related, when that passage falls short of the knowledge threshold by no more than
        ``related_passage``.

        Near the threshold, answerable and unanswerable questions overlap (README, "Knowledge
        and routing"): a flat don't-know loses the customer whose answer was there, a confident
        answer misleads the one whose question it was not. Saying first that we do not know
        and how to reach a person, then what came closest, serves both, as help centres do
        ("this article may help"). It is not an answer: the route stays ``fallback``, the
        passage is in ``sources``, and nothing is cached."""
        fallback = tenant.settings.fallback_answer or tenant.derived_fallback or DEFAULT_FALLBACK
        text = fallback.pick(lang)
        slack = self.thresholds.related_passage

        def near_enough(hit: Hit) -> bool:  # lexical coverage counts in full here
            return self._relevant(hit, lang, slack)

        near = answering_passages(candidates, near_enough, near_enough) if slack > 0 else []
        if not near:
            return RoutedAnswer("fallback", text)
        related = self._extract(
            tenant, near, question, vector, self._document_sources(tenant, near)
        )
        return RoutedAnswer(
            "fallback",
            f"{text}\n\n{RELATED_LEAD.pick(lang)}\n{related.response}",
            related.sources,
        )

    def _document_sources(self, tenant: TenantKnowledge, hits: Sequence[Hit]) -> list[Source]:
        return [
            Source(
                kind="document",
                id=tenant.chunks[hit.position].document_id,
                title=tenant.chunks[hit.position].title,
                score=round(hit.score, 4),
            )
            for hit in hits[: self.top_k]
        ]

    def _extract(
        self,
        tenant: TenantKnowledge,
        hits: Sequence[Hit],
        question: str,
        vector: np.ndarray | None,
        sources: list[Source],
    ) -> RoutedAnswer:
        """The relevant sentences of the best passage's section (the sentence closest to the
        question in meaning, and what completes it); when the runner-up passage is nearly as
        close (another section that may hold the fact asked for), its sentences follow."""

        def similarity(sentence: str) -> float | None:
            known = tenant.sentence_vectors.get(sentence)
            return float(known @ vector) if known is not None and vector is not None else None

        response = extract_answer(
            question, tenant.section_text(hits[0].position), similarity=similarity
        )
        used = sources[:1]
        if len(hits) > 1 and hits[1].score >= hits[0].score - self.thresholds.second_passage:
            extra = extract_answer(
                question, tenant.section_text(hits[1].position), similarity=similarity
            )
            if extra and extra not in response:
                response = f"{response}\n\n{extra}"
                used = sources[:2]
        return RoutedAnswer("knowledge", response, used)

    def _knowledge_instructions(
        self, tenant: TenantKnowledge, hits: Sequence[Hit], lang: str
    ) -> str:
        facts = "\n\n".join(
            f"[{n}] {tenant.chunks[h.position].heading}\n{tenant.chunks[h.position].text}"
            for n, h in enumerate(hits, start=1)
        )
        return KNOWLEDGE_INSTRUCTIONS.format(language=LANGUAGE_NAMES[lang], facts=facts)

    def _remember(self, tenant: TenantKnowledge, key: str | None, answer: RoutedAnswer) -> None:
        self.remember_generated(
            tenant.tenant_id, tenant.version, key, answer.response, answer.route, answer.sources
        )

    def remember_generated(
        self,
        tenant_id: uuid.UUID,
        version: int,
        key: str | None,
        response: str,
        route: str,
        sources: Sequence[Source],
    ) -> None:
        """Cache an answer drawn from the knowledge: extracted at once, or generated by the
        model (called when its generation finishes)."""
        if key is None or not response:
            return
        cached = CachedAnswer(response, route, [source.model_dump() for source in sources])
        self.cache.put(tenant_id, version, key, cached)


def answering_passages(
    ranked: Sequence[Hit], answers: Callable[[Hit], bool], relevant: Callable[[Hit], bool]
) -> list[Hit]:
    """The passages that answer, best first: the relevant ones, provided the best-ranked passage
    answers itself. Otherwise none: a lower passage that clears the threshold only through
    lexical coverage (a passage that shares nothing with the question but the shop's name) is
    no better an answer than the closer one that did not, and the question gets the fallback.
    Ranking and relevance weigh lexical coverage differently (squared and small for ranking,
    linear for relevance), which is what lets a lower passage pass where the best one did not."""
    if not ranked or not answers(ranked[0]):
        return []
    return [hit for hit in ranked if relevant(hit)]


def _language(query: str, history: Sequence[ChatTurn]) -> str:
    """The question's language; a message without words ("20261234") continues the language
    of the conversation."""
    if not any(ch.isalpha() for ch in query):
        previous = previous_user_turn(history)
        if previous is not None:
            return detect_language(previous)
    return detect_language(query)


def _said(text: str | None) -> str | None:
    return normalised(text) if text else None
