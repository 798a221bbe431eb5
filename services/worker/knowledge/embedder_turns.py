"""Turns at one embedder, between the jobs' embeddings and a tenant's indexing.

The embedder is not shared between threads, so its callers take turns. A job's embedding (its
question, on the preparer's thread) goes before the next slice of an indexing: a tenant that
uploads many documents keeps the embedder busy for minutes on a CPU (~37 ms a passage here),
and every job of every tenant would otherwise wait behind all of it. An indexing embeds in
slices and gives way between them, so a job waits for one slice at most. Indexings of several
tenants take their slices' turns in the order they asked, so a tenant with a few FAQ entries
is indexed between the slices of another's large upload, not after all of it (a plain lock is
not fair: the thread that just released it takes it again first).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

INDEX_SLICE = 4
"""Texts an indexing embeds per turn: about 0.15 s of long passages with the default embedder,
which embeds no faster in larger batches (the example shop's 364 texts: 13.4 s one at a time,
13.5 s in batches of 32). ``bench/indexing.py``: while the shop is indexed, a question waits
up to ~0.4 s between slices of 4 (slices of 8: ~0.56 s) and up to ~19 s behind one call."""


class EmbedderTurns:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._busy = False
        self._jobs_waiting = 0
        self._tickets = itertools.count()
        self._slices_waiting: deque[int] = deque()  # indexings' tickets, in the order they asked

    @property
    def jobs_waiting(self) -> int:
        """Jobs' embeddings waiting for their turn now."""
        with self._changed:
            return self._jobs_waiting

    @property
    def slices_waiting(self) -> int:
        """Indexings' slices waiting for their turn now."""
        with self._changed:
            return len(self._slices_waiting)

    @contextmanager
    def for_job(self) -> Iterator[None]:
        """The embedder for a job's texts: next, whatever an indexing has left to do."""
        with self._changed:
            self._jobs_waiting += 1
            try:
                self._changed.wait_for(lambda: not self._busy)
            finally:
                self._jobs_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            self._release()

    @contextmanager
    def for_indexing(self) -> Iterator[None]:
        """The embedder for one slice of an indexing, once no job's embedding is waiting and
        the slices that asked before this one have had their turn."""
        with self._changed:
            ticket = next(self._tickets)
            self._slices_waiting.append(ticket)
            try:
                self._changed.wait_for(
                    lambda: (
                        not self._busy
                        and not self._jobs_waiting
                        and self._slices_waiting[0] == ticket
                    )
                )
            finally:
                self._slices_waiting.remove(ticket)
                self._changed.notify_all()  # the next ticket may be served now
            self._busy = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        with self._changed:
            self._busy = False
            self._changed.notify_all()
