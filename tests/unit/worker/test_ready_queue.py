from services.worker.engine import GenerationRequest
from services.worker.ready_queue import ReadyJob, ReadyQueue
from tests.unit.worker.fakes import pending


def ready_jobs(count: int) -> list[ReadyJob]:
    jobs = []
    for _ in range(count):
        job = pending()
        jobs.append(ReadyJob(job, GenerationRequest(job.key, [], job.request.params)))
    return jobs


def test_jobs_are_taken_oldest_first_across_the_groups_they_were_prepared_in() -> None:
    ready = ReadyQueue(capacity=8)
    first, second = ready_jobs(3), ready_jobs(2)
    ready.put(first)
    ready.put(second)
    assert ready.take(limit=4, timeout_s=0) == [*first, second[0]]
    assert ready.take(limit=4, timeout_s=0) == [second[1]]
    assert len(ready) == 0


def test_static_batching_takes_one_whole_group() -> None:
    ready = ReadyQueue(capacity=8)
    first, second = ready_jobs(3), ready_jobs(2)
    ready.put(first)
    ready.put(second)
    assert ready.take(limit=8, timeout_s=0, whole_group=True) == first


def test_room_is_what_the_capacity_leaves() -> None:
    ready = ReadyQueue(capacity=4)
    ready.put(ready_jobs(3))
    assert ready.wait_for_room(1, timeout_s=0) == 1
    assert ready.wait_for_room(2, timeout_s=0) == 0  # not enough room (yet)


def test_a_closed_queue_hands_out_what_it_holds_then_none() -> None:
    ready = ReadyQueue(capacity=4)
    jobs = ready_jobs(1)
    ready.put(jobs)
    ready.close()
    assert ready.take(limit=4, timeout_s=0) == jobs
    assert ready.take(limit=4, timeout_s=0) is None


def test_an_open_empty_queue_gives_an_empty_list_after_the_timeout() -> None:
    assert ReadyQueue(capacity=1).take(limit=1, timeout_s=0.01) == []


def test_clear_removes_and_returns_everything_waiting() -> None:
    ready = ReadyQueue(capacity=8)
    first, second = ready_jobs(2), ready_jobs(1)
    ready.put(first)
    ready.put(second)
    assert ready.clear() == [*first, *second]
    assert len(ready) == 0
    assert ready.wait_for_room(8, timeout_s=0) == 8
