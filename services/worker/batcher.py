"""The dynamic batcher: jobs arrive one by one from the broker, the engine takes them in batches.

A batch closes when it is full (``max_batch_size``) or when its oldest job has waited
``max_wait_s``: under load batches fill at once, and a lone job waits at most ``max_wait_s``.
Within what is waiting, the highest priority goes first (oldest first among equals), and the
rest of the batch is filled with jobs of similar prompt length (power-of-two buckets) so that
padding stays small. The consumer thread puts, the preparer thread takes. With continuous
batching the taker does not wait for company: an idle engine starts on a lone job at once and
later jobs join it between decode steps.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(order=True)
class _Waiting(Generic[T]):
    order: tuple[int, int]  # (-priority, arrival number): the most urgent sorts first
    arrived: float = field(compare=False)
    bucket: int = field(compare=False)
    item: T = field(compare=False)


class DynamicBatcher(Generic[T]):
    def __init__(
        self,
        max_batch_size: int,
        max_wait_s: float,
        *,
        priority: Callable[[T], int] = lambda _item: 0,
        length: Callable[[T], int] = lambda _item: 0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._priority = priority
        self._length = length
        self._waiting: list[_Waiting[T]] = []
        self._arrivals = itertools.count()
        self._changed = threading.Condition()
        self._closed = False
        self._interrupted = False

    def put(self, item: T) -> None:
        entry = _Waiting(
            (-self._priority(item), next(self._arrivals)),
            time.monotonic(),
            max(self._length(item), 1).bit_length(),
            item,
        )
        with self._changed:
            if self._closed:
                raise RuntimeError("batcher is closed")
            self._waiting.append(entry)
            self._changed.notify_all()

    def close(self) -> None:
        """Stop handing out batches; what is still waiting stays unprocessed."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def clear(self) -> int:
        """Drop everything waiting (its messages died with their channel); returns how many."""
        with self._changed:
            dropped = len(self._waiting)
            self._waiting.clear()
            return dropped

    def interrupt(self) -> None:
        """End the wait of a ``next_batch`` waiting for a first job now (it returns ``[]``):
        its caller has other work (jobs whose tenant's knowledge has just been indexed)."""
        with self._changed:
            self._interrupted = True
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        with self._changed:
            return self._closed

    def __len__(self) -> int:
        with self._changed:
            return len(self._waiting)

    def next_batch(
        self, idle_timeout_s: float, *, limit: int | None = None, wait_for_company: bool = True
    ) -> list[T] | None:
        """The next batch of at most ``limit`` (default: the batch size) jobs.

        ``[]`` if nothing arrived within ``idle_timeout_s``; ``None`` once closed. With
        ``wait_for_company`` a partial batch waits until its oldest job has waited
        ``max_wait_s``; without, whatever is waiting is taken at once (continuous batching:
        the engine is busy anyway).
        """
        size = min(limit or self.max_batch_size, self.max_batch_size)
        with self._changed:
            give_up_at = time.monotonic() + idle_timeout_s
            while not self._waiting and not self._closed:
                remaining = give_up_at - time.monotonic()
                if remaining <= 0 or self._interrupted:
                    self._interrupted = False
                    return []
                self._changed.wait(remaining)
            while wait_for_company and not self._closed and len(self._waiting) < size:
                oldest = min(entry.arrived for entry in self._waiting)
                remaining = oldest + self.max_wait_s - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            if self._closed:
                return None
            return self._take(size)

    def _take(self, size: int) -> list[T]:
        anchor = min(self._waiting)
        others = sorted(
            (entry for entry in self._waiting if entry is not anchor),
            key=lambda entry: (abs(entry.bucket - anchor.bucket), entry.order),
        )
        chosen = [anchor, *others[: size - 1]]
        chosen_ids = {id(entry) for entry in chosen}
        self._waiting = [entry for entry in self._waiting if id(entry) not in chosen_ids]
        return [entry.item for entry in chosen]
