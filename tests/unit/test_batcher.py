import threading
import time

import pytest

from services.worker.batcher import DynamicBatcher


def test_a_full_batch_is_handed_out_without_waiting() -> None:
    batcher: DynamicBatcher[int] = DynamicBatcher(max_batch_size=4, max_wait_s=60)
    for item in range(6):
        batcher.put(item)
    assert batcher.next_batch(idle_timeout_s=1) == [0, 1, 2, 3]
    assert len(batcher) == 2


def test_a_partial_batch_closes_when_its_oldest_item_has_waited_max_wait() -> None:
    batcher: DynamicBatcher[str] = DynamicBatcher(max_batch_size=8, max_wait_s=0.2)
    batcher.put("first")
    started = time.monotonic()
    batch = batcher.next_batch(idle_timeout_s=5)
    waited = time.monotonic() - started
    assert batch == ["first"]
    assert waited >= 0.15  # it did wait for company, not return at once


def test_items_arriving_during_the_wait_join_the_batch() -> None:
    batcher: DynamicBatcher[int] = DynamicBatcher(max_batch_size=3, max_wait_s=5)
    batcher.put(1)

    def late_arrivals() -> None:
        time.sleep(0.05)
        batcher.put(2)
        batcher.put(3)

    threading.Thread(target=late_arrivals).start()
    assert batcher.next_batch(idle_timeout_s=5) == [1, 2, 3]


def test_an_idle_batcher_returns_an_empty_batch_after_the_idle_timeout() -> None:
    batcher: DynamicBatcher[int] = DynamicBatcher(max_batch_size=2, max_wait_s=0.01)
    assert batcher.next_batch(idle_timeout_s=0.05) == []


def test_closing_wakes_a_waiting_taker_and_leaves_items_unprocessed() -> None:
    batcher: DynamicBatcher[int] = DynamicBatcher(max_batch_size=10, max_wait_s=30)
    batcher.put(1)
    results: list[object] = []
    taker = threading.Thread(target=lambda: results.append(batcher.next_batch(idle_timeout_s=30)))
    taker.start()
    time.sleep(0.05)
    batcher.close()
    taker.join(timeout=5)
    assert results == [None]
    assert len(batcher) == 1


def test_clear_drops_what_is_waiting() -> None:
    batcher: DynamicBatcher[int] = DynamicBatcher(max_batch_size=10, max_wait_s=30)
    batcher.put(1)
    batcher.put(2)
    assert batcher.clear() == 2
    assert batcher.next_batch(idle_timeout_s=0.01) == []


def test_the_most_urgent_job_goes_first_then_the_oldest() -> None:
    batcher: DynamicBatcher[tuple[str, int]] = DynamicBatcher(
        max_batch_size=1, max_wait_s=0, priority=lambda item: item[1]
    )
    for item in [("low", 0), ("urgent", 9), ("normal", 5), ("urgent-later", 9)]:
        batcher.put(item)
    order = [batcher.next_batch(idle_timeout_s=1)[0][0] for _ in range(4)]
    assert order == ["urgent", "urgent-later", "normal", "low"]


def test_a_batch_is_filled_with_jobs_of_similar_length() -> None:
    batcher: DynamicBatcher[int] = DynamicBatcher(
        max_batch_size=3, max_wait_s=0, length=lambda length: length
    )
    for length in [40, 3000, 35, 2900, 50, 3100]:
        batcher.put(length)
    assert sorted(batcher.next_batch(idle_timeout_s=1)) == [35, 40, 50]
    assert sorted(batcher.next_batch(idle_timeout_s=1)) == [2900, 3000, 3100]


def test_without_waiting_for_company_whatever_waits_is_taken_at_once() -> None:
    batcher: DynamicBatcher[int] = DynamicBatcher(max_batch_size=8, max_wait_s=60)
    batcher.put(1)
    started = time.monotonic()
    assert batcher.next_batch(idle_timeout_s=0, limit=4, wait_for_company=False) == [1]
    assert time.monotonic() - started < 30


def test_a_closed_batcher_says_so_and_refuses_new_items() -> None:
    batcher: DynamicBatcher[int] = DynamicBatcher(max_batch_size=2, max_wait_s=0)
    assert not batcher.closed
    batcher.close()
    assert batcher.closed
    with pytest.raises(RuntimeError):
        batcher.put(1)


def test_an_interrupt_ends_the_wait_for_a_first_job_once() -> None:
    batcher: DynamicBatcher[int] = DynamicBatcher(max_batch_size=4, max_wait_s=60)
    batches: list[list[int] | None] = []
    taker = threading.Thread(target=lambda: batches.append(batcher.next_batch(60)))
    taker.start()
    time.sleep(0.05)  # let it wait (an interrupt before the wait ends it as well)
    batcher.interrupt()
    taker.join(10)
    assert not taker.is_alive() and batches == [[]]
    batcher.put(1)
    assert batcher.next_batch(1, wait_for_company=False) == [1]
    assert batcher.next_batch(0.05) == []  # the interrupt was spent: this one waited it out
