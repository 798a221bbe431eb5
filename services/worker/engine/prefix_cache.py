"""The KV cache of prompt prefixes that many jobs share, kept between jobs.

Every prompt of a tenant starts with the same tokens: the chat template's opening, the system
prompt and the header of the customer's turn (``EncodedPrompt.shared_prefix``, 47 of the ~60
tokens of a shop question on the default model). Prefilling them again for every job is most
of a prefill: with their KV cache kept, a job prefills only its own tokens (time to the first
token 2.3× shorter on the default model, ``bench/engine.py --parts prefix``). This is automatic
prefix caching as vLLM and SGLang do it, at the one boundary chatq knows is shared.

Entries are keyed by the prefix's token ids (so two tenants with the same system prompt share
one, and a prompt never gets another's cache), least recently used first out once the entries
together exceed the byte budget (``CHATQ_PREFIX_CACHE_MB``). A prefix is kept only from its
second sighting on: a system prompt that carries a question's own knowledge passages
(``CHATQ_KNOWLEDGE_ANSWER=generate``) is seen once, and would otherwise push the prefixes that
do repeat out of the budget. An entry is a copy, on the device the runtime left the cache on
(the GPU under IO binding), never modified, only read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch

from shared.metrics import PREFIX_CACHE

PastKeyValues = tuple[tuple[torch.Tensor, torch.Tensor], ...]

MIN_PREFIX_TOKENS = 8
"""A shorter prefix is not worth an entry: it saves less than the extra forward call costs."""
REMEMBERED_SIGHTINGS = 4096
"""Prefixes seen once, remembered (by hash) to recognise their second sighting."""


def past_bytes(past: PastKeyValues) -> int:
    return sum(t.numel() * t.element_size() for layer in past for t in layer)


class PrefixCache:
    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 0:
            raise ValueError("capacity_bytes must be 0 (off) or more")
        self.capacity_bytes = capacity_bytes
        self._entries: OrderedDict[tuple[int, ...], PastKeyValues] = OrderedDict()
        self._bytes = 0
        self._sighted: OrderedDict[int, None] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.capacity_bytes > 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, prefix: Sequence[int]) -> bool:
        """Whether ``prefix`` is kept (not counted as a look-up)."""
        return tuple(prefix) in self._entries

    @staticmethod
    def usable_prefix(prompt: Sequence[int], shared_prefix: int) -> int:
        """How many leading tokens of ``prompt`` may come from the cache: its shared prefix,
        if long enough, and never the whole prompt (its last token must run for the logits)."""
        if shared_prefix < MIN_PREFIX_TOKENS or shared_prefix >= len(prompt):
            return 0
        return shared_prefix

    def get(self, prefix: Sequence[int]) -> PastKeyValues | None:
        """The kept cache of ``prefix`` (counted as a hit or a miss), most recently used now."""
        key = tuple(prefix)
        past = self._entries.get(key)
        PREFIX_CACHE.labels("miss" if past is None else "hit").inc()
        if past is not None:
            self._entries.move_to_end(key)
        return past

    def seen_before(self, prefix: Sequence[int]) -> bool:
        """Whether ``prefix`` was offered before (a repeated prefix is worth keeping);
        records this sighting."""
        key = hash(tuple(prefix))
        seen = key in self._sighted
        self._sighted[key] = None
        self._sighted.move_to_end(key)
        while len(self._sighted) > REMEMBERED_SIGHTINGS:
            self._sighted.popitem(last=False)
        return seen

    def put(self, prefix: Sequence[int], past: PastKeyValues) -> None:
        """Keep ``past`` (the KV cache of exactly ``prefix``, batch 1) unless it alone exceeds
        the budget; evicts the least recently used entries to make room."""
        size = past_bytes(past)
        if not self.enabled or size > self.capacity_bytes:
            return
        key = tuple(prefix)
        previous = self._entries.pop(key, None)
        if previous is not None:
            self._bytes -= past_bytes(previous)
        while self._entries and self._bytes + size > self.capacity_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= past_bytes(evicted)
        self._entries[key] = past
        self._bytes += size
