"""Each tenant's knowledge in the worker's memory: FAQ wordings and document chunks in hybrid
(vector + lexical) indexes, intents compiled, settings parsed.

A tenant's knowledge is loaded the first time one of its jobs arrives and again whenever its
``knowledge_version`` moves; a background thread watches the versions so that, most of the
time, the re-indexing happens before the next job needs it. Vectors live in the database with
the chunks: the first worker that meets a chunk (or FAQ entry) without a vector of the current
embedding model computes it and stores it, so the others (and restarts) only read. An indexing
embeds a slice at a time and lets a job's embeddings go between slices (``EmbedderTurns``):
routing does not wait for the whole of a large upload being indexed in the background.

A job whose tenant is not held at its version yet (a tenant met for the first time, a change the
watcher has not reached) does not index on the worker's preparer thread either: the registry
loads it on a loader thread of its own (``held_or_loading``) while the job waits aside, so the
other tenants' jobs go on.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

import numpy as np
from sqlalchemy import ColumnElement, Row, select, update

from services.worker.knowledge.embedder_turns import INDEX_SLICE, EmbedderTurns
from services.worker.knowledge.embeddings import Embedder
from services.worker.knowledge.extractive import passage_sentences
from services.worker.knowledge.index import HybridIndex, IndexedText
from services.worker.router.builtin_intents import BUILTIN_HANDOFF, BUILTIN_HANDOFF_NAME
from services.worker.router.contact import find_contact
from services.worker.router.intents import CompiledIntent
from shared import metrics
from shared.db.engine import session_scope
from shared.db.models import FaqEntry, IntentDefinitionRow, KbChunk, KbDocument, Tenant
from shared.knowledge.schemas import IntentIn, LocalizedText, TenantSettings
from shared.logs import get_logger
from shared.tenant_safety import TenantSafety, build_tenant_safety, load_tenant_safety

log = get_logger(__name__)

# Tenants indexed at once for jobs waiting aside: beyond the first, so that a tenant with a few
# FAQ entries is not held behind another's large upload (their slices share the embedder).
LOADER_THREADS = 4

# The columns ``KnowledgeRegistry._load`` reads for each index, in its order.
ChunkRow: TypeAlias = Row[uuid.UUID, str, str, str, str, str | None, bytes | None, str | None]
FaqRow: TypeAlias = Row[
    uuid.UUID, str, str, str, list[Any], str | None, bytes | None, str | None, datetime
]
IntentRow: TypeAlias = Row[str, dict[str, Any]]


@dataclass(frozen=True)
class ChunkRecord:
    document_id: str
    title: str
    heading: str
    text: str
    lang: str | None


@dataclass(frozen=True)
class FaqRecord:
    faq_id: str
    question: str
    answer: str
    lang: str | None


@dataclass
class TenantKnowledge:
    tenant_id: uuid.UUID
    name: str
    version: int
    settings: TenantSettings
    chunks: list[ChunkRecord] = field(default_factory=list)
    chunk_index: HybridIndex | None = None
    faq: list[FaqRecord] = field(default_factory=list)
    faq_wording_owner: list[int] = field(default_factory=list)  # wording row → faq position
    faq_index: HybridIndex | None = None
    # each FAQ answer's vector (as a passage, one row per entry): which FAQ entry a question
    # means is decided by its answer as well as by its question's wordings
    faq_answer_vectors: np.ndarray | None = None
    intents: list[CompiledIntent] = field(default_factory=list)
    # said when nothing matches and the tenant set no fallback_answer: names the contact its
    # own documents give
    derived_fallback: LocalizedText | None = None
    # the tenant's moderator (shipped lists + its own) and safe answer
    safety: TenantSafety = field(default_factory=lambda: build_tenant_safety(TenantSettings(), []))
    # every chunk sentence's vector (as a passage): extractive answers pick a passage's sentence
    # by meaning; computed when the tenant is indexed, kept in memory only
    sentence_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    # each chunk sentence's chunk (the first that holds it): names the source of a sentence
    # repeated from an earlier answer
    sentence_chunks: dict[str, int] = field(default_factory=dict)
    # FAQ and intent answers' sentences, embedded when first needed (a follow-up about what
    # such an answer said); kept with this version of the knowledge
    answer_sentence_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    _chunk_languages: set[str] | None = None

    @property
    def has_knowledge(self) -> bool:
        return bool(self.intents) or self.faq_index is not None or self.chunk_index is not None

    def faq_languages(self) -> set[str]:
        return {entry.lang for entry in self.faq if entry.lang}

    def section_text(self, position: int) -> str:
        """The text of the chunk's whole section (its chunks with the same document and
        heading): a long section is cut into chunks, and the fact asked for may sit in the
        chunk beside the one that matched best."""
        chunk = self.chunks[position]
        start = end = position
        while start > 0 and _same_section(self.chunks[start - 1], chunk):
            start -= 1
        while end + 1 < len(self.chunks) and _same_section(self.chunks[end + 1], chunk):
            end += 1
        return "\n\n".join(c.text for c in self.chunks[start : end + 1])

    def chunk_languages(self) -> set[str]:
        if self._chunk_languages is None:
            self._chunk_languages = {chunk.lang for chunk in self.chunks if chunk.lang}
        return self._chunk_languages


def _vectors(blob: bytes | None, dim: int) -> np.ndarray | None:
    if blob is None:
        return None
    array = np.frombuffer(blob, dtype=np.float32)
    if array.size % dim:
        return None
    return array.reshape(-1, dim)


def _same_section(one: ChunkRecord, other: ChunkRecord) -> bool:
    return one.document_id == other.document_id and one.heading == other.heading


def _passage_text(chunk: ChunkRecord) -> str:
    # The heading path carries the topic a paragraph often leaves implicit ("Shipping > Fees").
    return f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text


class KnowledgeRegistry:
    """The tenants' knowledge, loaded on demand and kept current."""

    def __init__(
        self,
        database_url: str,
        embedder: Embedder,
        intent_threshold: float,
        index_slice: int = INDEX_SLICE,
    ) -> None:
        """``index_slice``: texts an indexing embeds per turn (``EmbedderTurns``)."""
        self.database_url = database_url
        self.embedder = embedder
        self.intent_threshold = intent_threshold
        self._tenants: dict[uuid.UUID, TenantKnowledge] = {}
        # one load per tenant at a time; tenants load side by side, their slices taking turns
        # at the embedder, so a small tenant is not held behind a large one's indexing
        self._load_locks: dict[uuid.UUID, threading.Lock] = {}
        self.embedder_turns = EmbedderTurns()  # a job's embeddings before an indexing's
        self.index_slice = index_slice
        self._example_vectors: dict[str, np.ndarray] = {}
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        # loads for jobs waiting aside (``held_or_loading``), at most one running per tenant
        self._loader = ThreadPoolExecutor(
            max_workers=LOADER_THREADS, thread_name_prefix="knowledge-load"
        )
        self._loads: dict[uuid.UUID, Future[TenantKnowledge]] = {}
        self._loads_lock = threading.Lock()

    # --- embedding ----------------------------------------------------------------------------

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """A job's questions: before whatever an indexing has left to embed."""
        with self.embedder_turns.for_job():
            return self.embedder.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """A job's passages: before whatever an indexing has left to embed."""
        with self.embedder_turns.for_job():
            return self.embedder.embed_passages(texts)

    def _embed_for_index(self, texts: Sequence[str], *, as_queries: bool = False) -> np.ndarray:
        """Texts of a tenant's knowledge, a slice at a time, letting jobs go between slices."""
        embed = self.embedder.embed_queries if as_queries else self.embedder.embed_passages
        slices = []
        for start in range(0, len(texts), self.index_slice):
            with self.embedder_turns.for_indexing():
                slices.append(embed(texts[start : start + self.index_slice]))
        if not slices:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.vstack(slices)

    # --- access ---------------------------------------------------------------------------------

    def current(self, tenant_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, TenantKnowledge]:
        """Each tenant's knowledge at its latest version (loading what is stale)."""
        if not tenant_ids:
            return {}
        return self.at_versions(self._versions(tenant_ids))

    def at_versions(self, versions: Mapping[uuid.UUID, int]) -> dict[uuid.UUID, TenantKnowledge]:
        """Each tenant's knowledge at least at the version given (read with the claim of the
        tenant's jobs, so that routing needs no query of its own when nothing changed)."""
        return {
            tenant_id: self._held_at(tenant_id, version) or self._load(tenant_id)
            for tenant_id, version in versions.items()
        }

    def held_or_loading(
        self, versions: Mapping[uuid.UUID, int]
    ) -> tuple[dict[uuid.UUID, TenantKnowledge], dict[uuid.UUID, Future[TenantKnowledge]]]:
        """``at_versions`` without waiting: the tenants held at least at the version given,
        and, for the others, the background load that brings them (started if none runs).

        A load may end at an older version than asked, when it started before the change it
        was asked for: ask again once it is done."""
        held, loading = {}, {}
        for tenant_id, version in versions.items():
            known = self._held_at(tenant_id, version)
            if known is not None:
                held[tenant_id] = known
            else:
                loading[tenant_id] = self._load_in_background(tenant_id)
        return held, loading

    def _held_at(self, tenant_id: uuid.UUID, version: int) -> TenantKnowledge | None:
        """The tenant's knowledge if held at ``version`` or newer."""
        known = self._tenants.get(tenant_id)
        return known if known is not None and known.version >= version else None

    def _load_in_background(self, tenant_id: uuid.UUID) -> Future[TenantKnowledge]:
        with self._loads_lock:
            running = self._loads.get(tenant_id)
            if running is not None and not running.done():
                return running
            future = self._loader.submit(self._load, tenant_id)
            self._loads[tenant_id] = future
            return future

    def _versions(self, tenant_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, int]:
        with session_scope(self.database_url) as session:
            rows = session.execute(
                select(Tenant.id, Tenant.knowledge_version).where(Tenant.id.in_(tenant_ids))
            ).all()
        return {tenant_id: version for tenant_id, version in rows}

    # --- background refresh ---------------------------------------------------------------------

    def start_watching(self, interval_s: float) -> None:
        """Re-index changed tenants in the background, so jobs rarely wait for it."""

        def watch() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.refresh_all()
                except Exception as error:  # the database may be away; jobs load on demand
                    log.warning("knowledge_refresh_failed", error=repr(error))

        self._watcher = threading.Thread(target=watch, name="knowledge-refresh", daemon=True)
        self._watcher.start()

    def stop_watching(self) -> None:
        """Stop the watcher and the background loads (loads not started are cancelled)."""
        self._stop.set()
        self._loader.shutdown(wait=False, cancel_futures=True)

    def refresh_all(self) -> None:
        """Load every tenant whose knowledge changed (and those with knowledge not yet met)."""
        with session_scope(self.database_url) as session:
            rows = session.execute(select(Tenant.id, Tenant.knowledge_version)).all()
        for tenant_id, version in rows:
            known = self._tenants.get(tenant_id)
            if known is None or known.version < version:
                self._load(tenant_id)

    # --- loading --------------------------------------------------------------------------------

    def _load(self, tenant_id: uuid.UUID) -> TenantKnowledge:
        with self._loads_lock:
            lock = self._load_locks.setdefault(tenant_id, threading.Lock())
        with lock:
            started = time.perf_counter()
            with session_scope(self.database_url) as session:
                tenant = session.get(Tenant, tenant_id)
                if tenant is None:
                    raise LookupError(f"tenant {tenant_id} is gone")
                # the version is read first: the data below is at least that new
                knowledge = TenantKnowledge(
                    tenant_id=tenant.id,
                    name=tenant.name,
                    version=tenant.knowledge_version,
                    settings=TenantSettings.model_validate(tenant.settings or {}),
                )
                known = self._tenants.get(tenant_id)
                if known is not None and known.version >= knowledge.version:
                    return known  # another thread loaded it meanwhile
                chunk_rows = session.execute(
                    select(
                        KbChunk.id,
                        KbDocument.external_id,
                        KbDocument.title,
                        KbChunk.heading,
                        KbChunk.text,
                        KbChunk.lang,
                        KbChunk.embedding,
                        KbChunk.embedding_model,
                    )
                    .join(KbDocument, KbDocument.id == KbChunk.document_id)
                    .where(KbChunk.tenant_id == tenant_id)
                    .order_by(KbDocument.external_id, KbChunk.position)
                ).all()
                faq_rows = session.execute(
                    select(
                        FaqEntry.id,
                        FaqEntry.external_id,
                        FaqEntry.question,
                        FaqEntry.answer,
                        FaqEntry.alternatives,
                        FaqEntry.lang,
                        FaqEntry.embeddings,
                        FaqEntry.embedding_model,
                        FaqEntry.updated_at,
                    )
                    .where(FaqEntry.tenant_id == tenant_id)
                    .order_by(FaqEntry.external_id)
                ).all()
                intent_rows = session.execute(
                    select(IntentDefinitionRow.name, IntentDefinitionRow.definition)
                    .where(IntentDefinitionRow.tenant_id == tenant_id)
                    .order_by(IntentDefinitionRow.name)
                ).all()
                knowledge.safety = load_tenant_safety(session, tenant)
            self._index_chunks(knowledge, chunk_rows)
            self._index_faq(knowledge, faq_rows)
            self._compile_intents(knowledge, intent_rows)
            if knowledge.settings.fallback_answer is None:
                texts = [c.text for c in knowledge.chunks] + [f.answer for f in knowledge.faq]
                knowledge.derived_fallback = find_contact(texts).fallback()
            self._tenants[tenant_id] = knowledge
            metrics.KNOWLEDGE_INDEXING.observe(time.perf_counter() - started)
            log.info(
                "knowledge_indexed",
                tenant=knowledge.name,
                version=knowledge.version,
                chunks=len(knowledge.chunks),
                faq=len(knowledge.faq),
                intents=len(knowledge.intents),
                elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            return knowledge

    def _index_chunks(self, knowledge: TenantKnowledge, rows: Sequence[ChunkRow]) -> None:
        """Each chunk's stored rows are its vector, then its sentences' (the extractive
        answer picks a sentence by meaning); a chunk stored otherwise is embedded again."""
        dim, model = self.embedder.dim, self.embedder.name
        records, blocks, missing = [], [], []
        for row in rows:
            chunk_id, document_id, title, heading, text, lang, blob, blob_model = row
            record = ChunkRecord(document_id, title, heading, text, lang)
            stored = _vectors(blob, dim) if blob_model == model else None
            records.append(record)
            expected = 1 + len(passage_sentences(text))
            blocks.append(stored if stored is not None and len(stored) == expected else None)
            if blocks[-1] is None:
                missing.append((len(records) - 1, chunk_id))
        if missing:
            wanted = {
                position: [
                    _passage_text(records[position]),
                    *passage_sentences(records[position].text),
                ]
                for position, _ in missing
            }
            computed = iter(self._embed_for_index([t for ts in wanted.values() for t in ts]))
            stored_rows = []
            for position, chunk_id in missing:
                block = np.vstack([next(computed) for _ in wanted[position]])
                blocks[position] = block
                stored_rows.append((chunk_id, block))
            # chunks are replaced, never edited, so a chunk id always names the same text
            self._store_vectors(KbChunk, "embedding", stored_rows)
        knowledge.chunks = records
        if records:
            filled = [block for block in blocks if block is not None]
            assert len(filled) == len(records)  # each block was stored or computed above
            matrix = np.vstack([block[0] for block in filled]).astype(np.float32)
            items = [IndexedText(_passage_text(r), r.lang) for r in records]
            knowledge.chunk_index = HybridIndex(items, matrix)
            for position, (record, block) in enumerate(zip(records, filled, strict=True)):
                sentences = passage_sentences(record.text)
                for sentence, vector in zip(sentences, block[1:], strict=True):
                    knowledge.sentence_vectors[sentence] = vector
                    knowledge.sentence_chunks.setdefault(sentence, position)

    def _index_faq(self, knowledge: TenantKnowledge, rows: Sequence[FaqRow]) -> None:
        """Each entry's stored rows are its wordings' vectors (as queries: they are matched
        against questions), then its answer's (as a passage); an entry stored otherwise is
        embedded again."""
        dim, model = self.embedder.dim, self.embedder.name
        texts: list[IndexedText] = []
        blocks: list[np.ndarray] = []
        answers: list[np.ndarray] = []
        for row in rows:
            faq_id, external_id, question, answer, alternatives, lang, blob, blob_model, changed = (
                row
            )
            wordings = [question, *(alternatives or [])]
            stored = _vectors(blob, dim) if blob_model == model else None
            if stored is None or len(stored) != len(wordings) + 1:
                stored = np.vstack(
                    [
                        self._embed_for_index(wordings, as_queries=True),
                        self._embed_for_index([answer]),
                    ]
                )
                # only if the entry was not replaced meanwhile (its wordings may differ)
                self._store_vectors(
                    FaqEntry, "embeddings", [(faq_id, stored)], FaqEntry.updated_at == changed
                )
            position = len(knowledge.faq)
            knowledge.faq.append(FaqRecord(external_id, question, answer, lang))
            for wording in wordings:
                texts.append(IndexedText(wording, lang))
                knowledge.faq_wording_owner.append(position)
            blocks.append(stored[:-1])
            answers.append(stored[-1])
        if texts:
            knowledge.faq_index = HybridIndex(texts, np.vstack(blocks).astype(np.float32))
            knowledge.faq_answer_vectors = np.vstack(answers).astype(np.float32)

    def _compile_intents(self, knowledge: TenantKnowledge, rows: Sequence[IntentRow]) -> None:
        compiled = []
        no_examples = np.zeros((0, self.embedder.dim), dtype=np.float32)
        for name, definition in rows:
            try:
                intent = IntentIn.model_validate(definition)
            except ValueError as error:  # stored by an older version with other rules
                log.error("intent_invalid", tenant=knowledge.name, intent=name, error=str(error))
                continue
            unseen = [e for e in intent.examples if e not in self._example_vectors]
            if unseen:
                vectors = self._embed_for_index(unseen, as_queries=True)
                for example, vector in zip(unseen, vectors, strict=True):
                    self._example_vectors[example] = vector
            examples = (
                np.vstack([self._example_vectors[e] for e in intent.examples])
                if intent.examples
                else no_examples
            )
            compiled.append(CompiledIntent.compile(name, intent, examples, self.intent_threshold))
        # a tenant with knowledge but no intents can still be asked for a person
        if knowledge.settings.builtin_handoff and not compiled and knowledge.has_knowledge:
            builtin = CompiledIntent.compile(
                BUILTIN_HANDOFF_NAME, BUILTIN_HANDOFF, no_examples, self.intent_threshold
            )
            # ... unless its FAQ answers that request its own way
            if not any(builtin.rule_matches(entry.question) for entry in knowledge.faq):
                compiled.append(builtin)
        knowledge.intents = compiled

    def _store_vectors(
        self,
        table: type[KbChunk] | type[FaqEntry],
        column: str,
        rows: list[tuple[uuid.UUID, np.ndarray]],
        *conditions: ColumnElement[bool],
    ) -> None:
        if not rows:
            return
        try:
            with session_scope(self.database_url) as session:
                for row_id, vector in rows:
                    session.execute(
                        update(table)
                        .where(table.id == row_id, *conditions)
                        .values(
                            {
                                column: np.asarray(vector, dtype=np.float32).tobytes(),
                                "embedding_model": self.embedder.name,
                            }
                        )
                    )
        except Exception as error:  # the vectors are in memory; the next load computes again
            log.warning("embeddings_not_stored", error=repr(error), rows=len(rows))
