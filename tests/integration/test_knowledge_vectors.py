"""Vectors are computed once and kept with the knowledge: a chunk's (and its sentences', which
the extractive answer picks from) and an FAQ entry's (its wordings' and its answer's). A worker
that starts later, or reloads, reads them instead of embedding again."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from services.worker.knowledge.embedder_turns import INDEX_SLICE
from services.worker.knowledge.embeddings import Embedder, load_embedder
from services.worker.knowledge.extractive import passage_sentences
from services.worker.router.tenant_knowledge import KnowledgeRegistry
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.db.engine import session_scope
from shared.knowledge import store
from shared.knowledge.schemas import DocumentIn, FaqIn

pytestmark = pytest.mark.integration

DOCUMENT = """# Gift cards

## Validity
Gift cards come in 100, 200 and 500 yuan. They are valid for 3 years from the day they are
bought. A gift card cannot be exchanged for cash.
"""


class CountingEmbedder(Embedder):
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name, self.dim = inner.name, inner.dim
        self.texts = 0

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.embed_passages(texts)


def test_a_second_worker_reads_the_vectors_the_first_one_stored(
    backend_settings: Settings,
) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    with session_scope(url) as session:
        tenant_id = store.tenant_by_name(session, key.tenant).id
        store.put_document(
            session, tenant_id, "gift-cards", DocumentIn(title="Gift cards", text=DOCUMENT)
        )
        store.put_faq(
            session,
            tenant_id,
            "cash",
            FaqIn(
                question="Can I pay cash on delivery?",
                answer="No, we do not.",
                alternatives=["COD?"],
            ),
        )
    real = load_embedder(backend_settings.embedding_model, backend_settings.embedding_model_dir)

    first = CountingEmbedder(real)
    loaded = KnowledgeRegistry(url, first, 0.9).current({tenant_id})[tenant_id]
    sentences = passage_sentences(DOCUMENT.split("\n", 3)[-1])
    assert first.texts >= 1 + 3  # a chunk, its sentences, the FAQ's two wordings and answer
    assert set(sentences) <= set(loaded.sentence_vectors)
    assert loaded.faq_answer_vectors is not None and loaded.faq_answer_vectors.shape == (
        1,
        real.dim,
    )

    second = CountingEmbedder(real)
    again = KnowledgeRegistry(url, second, 0.9).current({tenant_id})[tenant_id]
    assert second.texts == 0  # everything was read from the database
    for sentence, vector in loaded.sentence_vectors.items():
        np.testing.assert_allclose(again.sentence_vectors[sentence], vector, atol=1e-6)
    np.testing.assert_allclose(again.faq_answer_vectors, loaded.faq_answer_vectors, atol=1e-6)


class GatedEmbedder(CountingEmbedder):
    """Records each call; the indexing's first slice holds its turn until a job waits."""

    def __init__(self, inner: Embedder) -> None:
        super().__init__(inner)
        self.calls: list[tuple[str, int]] = []
        self.registry: KnowledgeRegistry | None = None
        self.job_asked = threading.Event()

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(("queries", len(texts)))
        return super().embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(("passages", len(texts)))
        if len(self.calls) == 1:  # the indexing's first slice: let a job ask meanwhile
            assert self.registry is not None
            self.job_asked.set()
            turns = self.registry.embedder_turns
            give_up_at = time.monotonic() + 30
            while turns.jobs_waiting == 0 and time.monotonic() < give_up_at:
                time.sleep(0.005)
        return super().embed_passages(texts)


def test_a_jobs_question_is_embedded_between_the_slices_of_an_indexing(
    backend_settings: Settings,
) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    sentences = [
        f"Store number {n} opens at {n % 12 + 1} o'clock every weekday." for n in range(30)
    ]
    with session_scope(url) as session:
        tenant_id = store.tenant_by_name(session, key.tenant).id
        store.put_document(
            session,
            tenant_id,
            "stores",
            DocumentIn(title="Stores", text="# Stores\n\n" + " ".join(sentences)),
        )
    embedder = GatedEmbedder(
        load_embedder(backend_settings.embedding_model, backend_settings.embedding_model_dir)
    )
    registry = KnowledgeRegistry(url, embedder, 0.9)
    embedder.registry = registry
    indexing = threading.Thread(target=registry.current, args=({tenant_id},))
    indexing.start()
    assert embedder.job_asked.wait(30)
    question = registry.embed_queries(["When does store 3 open?"])  # waits for one slice only
    indexing.join(60)

    assert question.shape == (1, embedder.dim)
    passages = [n for kind, n in embedder.calls if kind == "passages"]
    assert sum(passages) > 2 * INDEX_SLICE  # the indexing had several slices to embed
    assert max(passages) <= INDEX_SLICE
    # the job's question went right after the first slice, not after the whole indexing
    assert embedder.calls[1] == ("queries", 1)
    assert ("passages", INDEX_SLICE) in embedder.calls[2:]
    assert len(registry.current({tenant_id})[tenant_id].sentence_vectors) >= 2 * INDEX_SLICE


def test_a_small_tenant_is_indexed_between_the_slices_of_a_large_ones_indexing(
    backend_settings: Settings,
) -> None:
    url = backend_settings.database_url
    large, small = create_api_key(url, "large"), create_api_key(url, "small")
    sections = [
        f"## Store {n}\n"
        + " ".join(
            f"Counter {c} of store {n} opens at {(n + c) % 12 + 1} o'clock." for c in range(8)
        )
        for n in range(15)
    ]
    with session_scope(url) as session:
        large_tenant = store.tenant_by_name(session, large.tenant)
        store.put_document(
            session,
            large_tenant.id,
            "stores",
            DocumentIn(title="Stores", text="# Stores\n\n" + "\n\n".join(sections)),
        )
        small_tenant = store.tenant_by_name(session, small.tenant)
        store.put_faq(
            session,
            small_tenant.id,
            "hours",
            FaqIn(question="When do you open?", answer="We open at 9 o'clock.", lang="en"),
        )
        versions = {
            large_tenant.id: large_tenant.knowledge_version,
            small_tenant.id: small_tenant.knowledge_version,
        }
    embedder = CountingEmbedder(
        load_embedder(backend_settings.embedding_model, backend_settings.embedding_model_dir)
    )
    registry = KnowledgeRegistry(url, embedder, 0.9)
    held, loading = registry.held_or_loading({large_tenant.id: versions[large_tenant.id]})
    assert held == {}
    large_loading = loading[large_tenant.id]
    give_up_at = time.monotonic() + 60
    while embedder.texts < 2 * INDEX_SLICE and time.monotonic() < give_up_at:
        time.sleep(0.005)  # the large tenant's indexing is under way
    # asked again while it runs, the same loading answers
    assert registry.held_or_loading(versions)[1][large_tenant.id] is large_loading
    small_loading = registry.held_or_loading(versions)[1][small_tenant.id]
    assert small_loading.result(60).faq[0].faq_id == "hours"
    # the small tenant was indexed between the large one's slices, not after all of them
    assert not large_loading.done()
    assert len(large_loading.result(120).chunks) >= 2
    held, loading = registry.held_or_loading(versions)
    assert loading == {} and set(held) == set(versions)
    registry.stop_watching()  # its loader threads
