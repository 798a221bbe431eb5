"""The answer cache: a question asked again (after normalisation) gets the earlier answer without
retrieval or the model.

The key is the tenant, its knowledge version, the model and the normalised question, so any
knowledge change (which bumps the version, and deletes the tenant's rows) invalidates every
cached answer at once. Each worker keeps an LRU in memory; the table ``answer_cache`` makes
answers survive restarts and be shared between workers, which pays because a generated answer
costs seconds of model time and a look-up well under a millisecond.
Only questions without history are cached: a follow-up's answer depends on the conversation.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from shared.db.engine import session_scope
from shared.db.models import AnswerCacheEntry
from shared.knowledge.text import normalize_question
from shared.logs import get_logger
from shared.metrics import ANSWER_CACHE

log = get_logger(__name__)

STATS_EVERY = 100  # lookups between two log lines with the hit rate


@dataclass(frozen=True)
class CachedAnswer:
    response: str
    route: str  # the route that produced it first
    sources: list[dict[str, Any]]


def cache_key(knowledge_version: int, model: str, lang: str, question: str) -> str:
    material = f"{knowledge_version}\n{model}\n{lang}\n{normalize_question(question)}"
    return hashlib.sha256(material.encode()).hexdigest()


class AnswerCache:
    def __init__(self, database_url: str, capacity: int) -> None:
        self.database_url = database_url
        self.capacity = capacity
        self._memory: OrderedDict[tuple[uuid.UUID, str], CachedAnswer] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    @property
    def hit_rate(self) -> float:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else 0.0

    def get(self, tenant_id: uuid.UUID, key: str) -> CachedAnswer | None:
        if not self.enabled:
            return None
        with self._lock:
            found = self._memory.get((tenant_id, key))
            if found is not None:
                self._memory.move_to_end((tenant_id, key))
        if found is None:
            found = self._from_database(tenant_id, key)
            if found is not None:
                self._remember(tenant_id, key, found)
        ANSWER_CACHE.labels("miss" if found is None else "hit").inc()
        with self._lock:
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
            looked_up = self.hits + self.misses
        if looked_up % STATS_EVERY == 0:
            log.info(
                "answer_cache_stats",
                lookups=looked_up,
                hits=self.hits,
                hit_rate=round(self.hit_rate, 3),
                entries=len(self._memory),
            )
        return found

    def put(
        self, tenant_id: uuid.UUID, knowledge_version: int, key: str, answer: CachedAnswer
    ) -> None:
        if not self.enabled:
            return
        self._remember(tenant_id, key, answer)
        try:
            with session_scope(self.database_url) as session:
                session.add(
                    AnswerCacheEntry(
                        tenant_id=tenant_id,
                        cache_key=key,
                        knowledge_version=knowledge_version,
                        answer={
                            "response": answer.response,
                            "route": answer.route,
                            "sources": answer.sources,
                        },
                        hits=0,
                    )
                )
        except IntegrityError:
            pass  # another worker cached the same question first
        except Exception as error:  # a cache must never fail a job
            log.warning("answer_cache_store_failed", error=repr(error))

    def _remember(self, tenant_id: uuid.UUID, key: str, answer: CachedAnswer) -> None:
        with self._lock:
            self._memory[(tenant_id, key)] = answer
            self._memory.move_to_end((tenant_id, key))
            while len(self._memory) > self.capacity:
                self._memory.popitem(last=False)

    def _from_database(self, tenant_id: uuid.UUID, key: str) -> CachedAnswer | None:
        try:
            with session_scope(self.database_url) as session:
                stored = session.scalar(
                    select(AnswerCacheEntry.answer).where(
                        AnswerCacheEntry.tenant_id == tenant_id, AnswerCacheEntry.cache_key == key
                    )
                )
                if stored is not None:
                    session.execute(
                        update(AnswerCacheEntry)
                        .where(
                            AnswerCacheEntry.tenant_id == tenant_id,
                            AnswerCacheEntry.cache_key == key,
                        )
                        .values(hits=AnswerCacheEntry.hits + 1)
                    )
        except Exception as error:
            log.warning("answer_cache_read_failed", error=repr(error))
            return None
        if stored is None:
            return None
        return CachedAnswer(stored["response"], stored["route"], list(stored.get("sources", [])))
