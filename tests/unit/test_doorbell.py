"""Doorbells: a ring wakes the listeners of its topic, and only those; a ring nobody waited for
is kept until the next wait; listeners clean up after themselves and after dead ones."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.doorbell import BellListener, Doorbell

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no UNIX sockets here")


@pytest.fixture
def bell() -> Iterator[Doorbell]:
    bell = Doorbell(f"test-{uuid.uuid4()}")
    yield bell
    assert not bell.folder.exists(), "closed listeners left their folder behind"


def listener(bell: Doorbell, *topics: str) -> BellListener:
    made = bell.listen()
    assert made is not None
    for topic in topics:
        made.subscribe(topic)
    return made


def test_a_ring_wakes_the_listeners_of_its_topic_and_no_other(bell: Doorbell) -> None:
    inference, also_inference = listener(bell, "inference"), listener(bell, "inference")
    postprocess = listener(bell, "postprocess")
    bell.ring("inference")
    assert inference.wait(5) and also_inference.wait(5)
    assert not postprocess.wait(0.05)
    for made in (inference, also_inference, postprocess):
        made.close()


def test_a_ring_before_the_wait_is_kept_and_one_wait_answers_many(bell: Doorbell) -> None:
    jobs = listener(bell, "")
    for _ in range(3):
        bell.ring()
    assert jobs.wait(0)
    assert not jobs.wait(0), "every ring already received is consumed by one wait"
    jobs.close()


def test_a_topic_left_is_no_longer_heard(bell: Doorbell) -> None:
    consumer = listener(bell, "a", "b")
    consumer.unsubscribe("a")
    bell.ring("a")
    assert not consumer.wait(0.05)
    bell.ring("b")
    assert consumer.wait(5)
    consumer.close()


def test_a_ring_removes_what_a_killed_process_left(bell: Doorbell) -> None:
    survivor, killed = listener(bell, "q"), listener(bell, "q")
    killed._socket.close()  # as a process killed outright leaves it: files, nobody reading
    left_behind = [killed.path, bell.topic_folder("q") / killed.path.name]
    assert all(path.is_socket() or path.is_symlink() for path in left_behind)
    bell.ring("q")
    assert survivor.wait(5)
    assert not any(path.exists() or path.is_symlink() for path in left_behind)
    survivor.close()


def test_close_removes_the_socket_the_entries_and_the_empty_folders(bell: Doorbell) -> None:
    first = listener(bell, "q")
    first.close()
    first.close()  # closing twice (at exit, say) is harmless
    assert not bell.folder.exists()
    second = listener(bell, "q")  # and the folders are made again for the next one
    bell.ring("q")
    assert second.wait(5)
    second.close()


def test_ringing_a_bell_nobody_listens_to_does_nothing(tmp_path: Path) -> None:
    bell = Doorbell(str(tmp_path / "nobody"))
    bell.ring("q")
    bell.ring()
    assert not bell.folder.exists()
