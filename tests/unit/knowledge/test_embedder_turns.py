"""Turns at the embedder: a job's embedding before an indexing's next slice, and indexings'
slices in the order they asked."""

from __future__ import annotations

import threading

from services.worker.knowledge.embedder_turns import EmbedderTurns
from tests.unit.worker.fakes import WAIT_S, wait_until


def test_a_job_goes_before_the_next_slice_of_an_indexing() -> None:
    turns = EmbedderTurns()
    order: list[str] = []

    def job() -> None:
        with turns.for_job():
            order.append("job")

    asker = threading.Thread(target=job)
    with turns.for_indexing():
        asker.start()
        assert wait_until(lambda: turns.jobs_waiting == 1)
    with turns.for_indexing():  # the indexing's next slice
        order.append("slice")
    asker.join(WAIT_S)
    assert order == ["job", "slice"]


def test_a_second_indexing_gets_its_turn_between_the_slices_of_the_first() -> None:
    turns = EmbedderTurns()
    order: list[str] = []

    def small_tenant() -> None:
        with turns.for_indexing():
            order.append("small")

    small = threading.Thread(target=small_tenant)
    with turns.for_indexing():  # the large tenant's first slice
        small.start()
        assert wait_until(lambda: turns.slices_waiting == 1)
    # the large tenant asks again at once, with the turn free: it asked last, so it waits
    with turns.for_indexing():
        order.append("large")
    small.join(WAIT_S)
    assert order == ["small", "large"]
    assert turns.slices_waiting == 0
