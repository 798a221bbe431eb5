"""The prefix cache's bookkeeping: which prefix may be cached, least recently used out first
within the byte budget, and hits and misses counted for operators."""

from __future__ import annotations

import pytest
import torch
from prometheus_client import REGISTRY

from services.worker.engine.prefix_cache import (
    MIN_PREFIX_TOKENS,
    PastKeyValues,
    PrefixCache,
    past_bytes,
)

TOKEN_BYTES = 2 * 2 * 4 * 4  # two layers, key and value, four floats each of four bytes


def past(tokens: int, fill: float = 0.0) -> PastKeyValues:
    return tuple(
        (torch.full((1, 1, tokens, 4), fill), torch.full((1, 1, tokens, 4), fill)) for _ in range(2)
    )


def lookups(result: str) -> float:
    return REGISTRY.get_sample_value("chatq_prefix_cache_lookups_total", {"result": result}) or 0.0


def test_a_prefix_is_used_only_when_long_enough_and_shorter_than_the_prompt() -> None:
    prompt = list(range(40))
    assert PrefixCache.usable_prefix(prompt, 30) == 30
    assert PrefixCache.usable_prefix(prompt, MIN_PREFIX_TOKENS - 1) == 0
    assert PrefixCache.usable_prefix(prompt, 40) == 0  # the last token must run for the logits
    assert PrefixCache.usable_prefix(prompt, 0) == 0


def test_an_entry_is_found_by_its_exact_tokens_and_counted() -> None:
    cache = PrefixCache(10 * TOKEN_BYTES)
    hits, misses = lookups("hit"), lookups("miss")
    cache.put([1, 2, 3], past(3, fill=7.0))
    found = cache.get([1, 2, 3])
    assert found is not None and float(found[0][0][0, 0, 0, 0]) == 7.0
    assert cache.get([1, 2]) is None  # a shorter prefix is another prefix
    assert cache.get([1, 2, 4]) is None
    assert (lookups("hit") - hits, lookups("miss") - misses) == (1, 2)
    assert [1, 2, 3] in cache and [9] not in cache  # membership is not a look-up
    assert lookups("hit") - hits == 1


def test_least_recently_used_entries_go_first_to_stay_within_the_budget() -> None:
    cache = PrefixCache(10 * TOKEN_BYTES)
    cache.put([1], past(4))
    cache.put([2], past(4))
    cache.get([1])  # [2] is now the least recently used
    cache.put([3], past(4))
    assert [1] in cache and [3] in cache and [2] not in cache
    assert cache.size_bytes == 8 * TOKEN_BYTES == sum(past_bytes(p) for p in (past(4), past(4)))


def test_replacing_an_entry_counts_its_bytes_once() -> None:
    cache = PrefixCache(10 * TOKEN_BYTES)
    cache.put([1], past(4))
    cache.put([1], past(6))
    assert len(cache) == 1 and cache.size_bytes == 6 * TOKEN_BYTES


def test_an_entry_larger_than_the_budget_is_not_kept_and_evicts_nothing() -> None:
    cache = PrefixCache(10 * TOKEN_BYTES)
    cache.put([1], past(4))
    cache.put([2], past(11))
    assert [2] not in cache and [1] in cache


def test_a_prefix_is_worth_keeping_from_its_second_sighting() -> None:
    cache = PrefixCache(10 * TOKEN_BYTES)
    assert not cache.seen_before([1, 2, 3])  # a system prompt carrying one question's passages
    assert not cache.seen_before([4, 5, 6])
    assert cache.seen_before([1, 2, 3])
    assert cache.seen_before([1, 2, 3])


def test_a_cache_without_budget_is_off() -> None:
    cache = PrefixCache(0)
    assert not cache.enabled
    cache.put([1], past(1))
    assert len(cache) == 0
    with pytest.raises(ValueError):
        PrefixCache(-1)
