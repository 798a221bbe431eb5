"""The key cache: a revocation is seen within its TTL, and unknown keys never evict known ones."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.api.auth import Caller, KeyCache, KeyRecord


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingStore:
    """Stands in for the api_keys table and counts the lookups that reach it."""

    def __init__(self) -> None:
        self.records: dict[str, KeyRecord] = {}
        self.lookups: list[str] = []

    def add(self, key_hash: str) -> KeyRecord:
        record = KeyRecord(Caller(uuid.uuid4(), "shop", uuid.uuid4()), (), None)
        self.records[key_hash] = record
        return record

    def load(self, key_hash: str) -> KeyRecord | None:
        self.lookups.append(key_hash)
        return self.records.get(key_hash)


def test_a_known_key_is_read_once_per_ttl_and_a_revocation_is_seen_after_it() -> None:
    store, clock = CountingStore(), Clock()
    record = store.add("known")
    cache = KeyCache(store.load, 1.0, clock=clock)
    assert cache.lookup("known") is record
    clock.now += 0.9
    assert cache.lookup("known") is record
    assert store.lookups == ["known"]
    del store.records["known"]  # revoked
    clock.now += 0.1  # the TTL is over
    assert cache.lookup("known") is None
    assert store.lookups == ["known", "known"]


def test_a_flood_of_random_keys_does_not_evict_a_known_key() -> None:
    store, clock = CountingStore(), Clock()
    store.add("known")
    cache = KeyCache(store.load, 1.0, max_known=100, max_unknown=1000, clock=clock)
    cache.lookup("known")
    flood = [secrets.token_hex(32) for _ in range(20_000)]
    for key_hash in flood:
        assert cache.lookup(key_hash) is None
    assert cache.lookup("known") is not None
    assert store.lookups.count("known") == 1  # still cached: no second database read
    assert len(store.lookups) == 1 + len(flood)


def test_unknown_keys_are_remembered_within_the_ttl_in_a_bounded_map() -> None:
    store, clock = CountingStore(), Clock()
    cache = KeyCache(store.load, 1.0, max_unknown=2, clock=clock)
    for key_hash in ("a", "b", "a"):
        cache.lookup(key_hash)
    assert store.lookups == ["a", "b"]
    cache.lookup("c")  # evicts the least recently used unknown key: "b"
    cache.lookup("b")
    assert store.lookups == ["a", "b", "c", "b"]


def test_a_key_issued_after_it_was_looked_up_works_after_the_ttl() -> None:
    store, clock = CountingStore(), Clock()
    cache = KeyCache(store.load, 1.0, clock=clock)
    assert cache.lookup("new") is None
    store.add("new")
    clock.now += 1.0
    assert cache.lookup("new") is not None


def test_known_keys_are_bounded_least_recently_used_first() -> None:
    store, clock = CountingStore(), Clock()
    for name in ("a", "b", "c"):
        store.add(name)
    cache = KeyCache(store.load, 60.0, max_known=2, clock=clock)
    for name in ("a", "b", "a", "c"):  # c evicts b, the least recently used
        cache.lookup(name)
    cache.lookup("a")
    cache.lookup("b")
    assert store.lookups == ["a", "b", "c", "b"]


def test_requests_that_miss_together_wait_for_one_read() -> None:
    store, clock = CountingStore(), Clock()
    record = store.add("busy")
    reading, release = threading.Event(), threading.Event()

    def slow_load(key_hash: str) -> KeyRecord | None:
        reading.set()
        release.wait(5)
        return store.load(key_hash)

    cache = KeyCache(slow_load, 1.0, clock=clock)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = [pool.submit(cache.lookup, "busy") for _ in range(8)]
        assert reading.wait(5)
        time.sleep(0.2)  # the other seven reach the cache while the first read is under way
        release.set()
        assert [answer.result(5) for answer in answers] == [record] * 8
    assert store.lookups == ["busy"]


def test_a_read_that_fails_leaves_the_next_request_to_read_again() -> None:
    store, clock = CountingStore(), Clock()
    record = store.add("known")
    failures = [RuntimeError("database away")]

    def flaky_load(key_hash: str) -> KeyRecord | None:
        if failures:
            raise failures.pop()
        return store.load(key_hash)

    cache = KeyCache(flaky_load, 1.0, clock=clock)
    with pytest.raises(RuntimeError):
        cache.lookup("known")
    assert cache.lookup("known") is record
