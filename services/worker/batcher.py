"""The dynamic batcher: jobs arrive one by one from the broker, the engine takes them in batches.

A batch closes when it is full (``max_batch_size``) or when its oldest job has waited
``max_wait_s``: under load batches fill at once, and a lone job waits at most ``max_wait_s``.
The consumer thread puts, the engine thread takes; the two never share a broker channel.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class DynamicBatcher(Generic[T]):
    def __init__(self, max_batch_size: int, max_wait_s: float) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._items: deque[tuple[float, T]] = deque()
        self._changed = threading.Condition()
        self._closed = False

    def put(self, item: T) -> None:
        with self._changed:
            if self._closed:
                raise RuntimeError("batcher is closed")
            self._items.append((time.monotonic(), item))
            self._changed.notify_all()

    def close(self) -> None:
        """Stop handing out batches; what is still waiting stays unprocessed."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def clear(self) -> int:
        """Drop everything waiting (its messages died with their channel); returns how many."""
        with self._changed:
            dropped = len(self._items)
            self._items.clear()
            return dropped

    def __len__(self) -> int:
        with self._changed:
            return len(self._items)

    def next_batch(self, idle_timeout_s: float) -> list[T] | None:
        """The next batch; ``[]`` if nothing arrived within ``idle_timeout_s``; ``None`` once
        the batcher is closed."""
        with self._changed:
            give_up_at = time.monotonic() + idle_timeout_s
            while not self._items and not self._closed:
                remaining = give_up_at - time.monotonic()
                if remaining <= 0:
                    return []
                self._changed.wait(remaining)
            while not self._closed and len(self._items) < self.max_batch_size:
                oldest_arrival = self._items[0][0]
                remaining = oldest_arrival + self.max_wait_s - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            if self._closed:
                return None
            count = min(self.max_batch_size, len(self._items))
            return [self._items.popleft()[1] for _ in range(count)]
