"""Group commit of submitted jobs on Postgres (where the API uses it): requests that wait while
a statement runs share the next transaction, a lone one is written at once, and a batch that
one bad row fails stores every other row and gives the bad row's error to its own request.

Rows written in one transaction share their ``xmin`` (the id of the transaction that inserted
them), which is how these tests see what was committed together."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, StatementError

from services.api.jobs.group_commit import GroupCommit
from services.api.jobs.service import new_job_writer
from services.api.outbox import Outbox
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.db.engine import get_engine, session_scope
from shared.db.models import ApiKey, JobStatus, utcnow

pytestmark = pytest.mark.integration


def new_key(settings: Settings) -> tuple[uuid.UUID, uuid.UUID]:
    """A new tenant's key: (tenant id, key id)."""
    issued = create_api_key(settings.database_url, f"shop-{uuid.uuid4().hex[:8]}")
    with session_scope(settings.database_url) as session:
        key = session.get(ApiKey, issued.id)
        assert key is not None
        return key.tenant_id, key.id


def job_parameters(settings: Settings, tenant_id: uuid.UUID, key_id: uuid.UUID) -> dict[str, Any]:
    """A new job and its request, as ``_store_in_one_statement`` passes them."""
    now = utcnow()
    row = {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "api_key_id": key_id,
        "session_id": None,
        "status": JobStatus.QUEUED,
        "query": "Where is my order?",
        "history": [],
        "params": {},
        "metadata": {},
        "webhook_url": None,
        "priority": 5,
        "deadline_at": None,
        "idempotency_key": None,
        "request_hash": "0" * 64,
        "created_at": now,
        "updated_at": now,
    }
    parameters, _ = Outbox(settings).with_job(row, {"job_id": str(row["id"])}, now)
    return parameters


def inserted_by(settings: Settings, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Each stored job's inserting transaction (its job row's and request row's agree)."""
    with session_scope(settings.database_url) as session:
        jobs = dict(
            session.execute(
                text("SELECT id, xmin::text::bigint FROM jobs WHERE id = ANY(:ids)"),
                {"ids": job_ids},
            ).all()
        )
        requests = dict(
            session.execute(
                text("SELECT job_id, xmin::text::bigint FROM outbox WHERE job_id = ANY(:ids)"),
                {"ids": job_ids},
            ).all()
        )
    assert jobs == requests
    return jobs


@contextmanager
def inserts_held(settings: Settings) -> Iterator[None]:
    """Inserts into ``jobs`` wait while this is open (another transaction holds a lock that
    conflicts with theirs)."""
    with get_engine(settings.database_url).connect() as connection:
        connection.execute(text("LOCK TABLE jobs IN SHARE MODE"))
        yield
        connection.rollback()


def insert_waiting(settings: Settings) -> bool:
    """Whether a statement waits for the lock ``inserts_held`` holds."""
    with session_scope(settings.database_url) as session:
        waiting = text(
            "SELECT count(*) FROM pg_locks WHERE NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return bool(session.scalar(waiting))


def in_threads(calls: list[Callable[[], None]]) -> tuple[list[threading.Thread], list[Any]]:
    """Start each call on a thread; the threads, and a list receiving what each raised."""
    errors: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception as error:
            errors[index] = error

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    return threads, errors


def wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    give_up_at = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < give_up_at, "timed out"
        time.sleep(0.01)


def one_then_a_batch(
    settings: Settings, writer: GroupCommit, first: dict[str, Any], batch: list[dict[str, Any]]
) -> list[Any]:
    """Write ``first`` and, while the writer waits on its insert, every row of ``batch``
    (each from a thread of its own, so they queue up together); what each write raised, in
    that order, once all have returned."""
    with inserts_held(settings):
        threads, errors = in_threads([lambda: writer.write(first)])
        wait_until(lambda: insert_waiting(settings))  # the writer took it, and waits
        more, more_errors = in_threads([lambda row=row: writer.write(row) for row in batch])
        wait_until(lambda: writer.waiting == len(batch))
        assert all(thread.is_alive() for thread in threads + more)  # nothing answered yet
    for thread in threads + more:
        thread.join(timeout=10)
        assert not thread.is_alive()
    return errors + more_errors


def test_requests_waiting_while_a_statement_runs_share_the_next_commit(
    postgres_settings: Settings,
) -> None:
    settings = postgres_settings
    tenant_id, key_id = new_key(settings)
    writer = new_job_writer(settings)
    rows = [job_parameters(settings, tenant_id, key_id) for _ in range(5)]
    errors = one_then_a_batch(settings, writer, rows[0], rows[1:])
    assert errors == [None] * 5
    transactions = inserted_by(settings, [row["id"] for row in rows])
    assert len(transactions) == 5
    assert len({transactions[row["id"]] for row in rows[1:]}) == 1  # one commit for four
    assert transactions[rows[0]["id"]] != transactions[rows[1]["id"]]


def test_a_lone_request_is_written_at_once(postgres_settings: Settings) -> None:
    settings = postgres_settings
    tenant_id, key_id = new_key(settings)
    writer = new_job_writer(settings)
    row = job_parameters(settings, tenant_id, key_id)
    writer.write(row)  # returns once committed: the row is there for any other connection
    assert list(inserted_by(settings, [row["id"]])) == [row["id"]]


def test_a_bad_row_fails_alone_and_the_rest_of_its_batch_is_stored(
    postgres_settings: Settings,
) -> None:
    settings = postgres_settings
    tenant_id, key_id = new_key(settings)
    writer = new_job_writer(settings)
    blocker = job_parameters(settings, tenant_id, key_id)
    good = [job_parameters(settings, tenant_id, key_id) for _ in range(3)]
    bad = job_parameters(settings, tenant_id, uuid.uuid4())  # an API key that is not there
    errors = one_then_a_batch(settings, writer, blocker, [*good[:2], bad, good[2]])
    assert [error is None for error in errors] == [True, True, True, False, True]
    assert isinstance(errors[3], IntegrityError)  # the bad row's own error, to its request
    stored = inserted_by(settings, [row["id"] for row in [blocker, *good, bad]])
    assert set(stored) == {row["id"] for row in [blocker, *good]}


def test_a_failed_statement_does_not_stop_the_writer(postgres_settings: Settings) -> None:
    """The failure reaches its request, and the next request is stored."""
    settings = postgres_settings
    tenant_id, key_id = new_key(settings)
    writer = new_job_writer(settings)
    broken = job_parameters(settings, tenant_id, key_id)
    broken["created_at"] = "not a time"
    with pytest.raises(StatementError, match=r"created_at|timestamp|datetime"):
        writer.write(broken)
    row = job_parameters(settings, tenant_id, key_id)
    writer.write(row)
    assert list(inserted_by(settings, [row["id"]])) == [row["id"]]
