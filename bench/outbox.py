"""Submits while the outbox relay drains a backlog, on SQLite and the embedded broker (the
defaults).

Side by side: the relay as it is (due rows leased in a short transaction, then published with
none open) and as it was (one transaction held open while every row of the batch is published;
on SQLite that is the one write lock every submit needs). Meanwhile a submitter stores a job and
its outbox row, as the API does, every few milliseconds. Figures: how long each submit's
transaction took while the relay ran (p50, p95, max) and how long the relay took; the two
strategies alternate over the rounds, medians over rounds.

    .venv/bin/python bench/outbox.py [--backlog 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from results_file import write_results

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import delete, select  # noqa: E402

from services.api.outbox import RELAY_BATCH, Outbox  # noqa: E402
from shared.api_keys import create_api_key  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.db.engine import session_scope  # noqa: E402
from shared.db.migrate import upgrade_database  # noqa: E402
from shared.db.models import ApiKey, Job, JobStatus, OutboxMessage, utcnow  # noqa: E402
from shared.messaging.broker import broker_connection  # noqa: E402
from shared.messaging.topology import INFERENCE_QUEUE, declare_topology  # noqa: E402

SUBMIT_EVERY_S = 0.005


class Backend:
    def __init__(self, data_dir: Path) -> None:
        self.settings = Settings(data_dir=data_dir, database_url="", broker_url="")
        upgrade_database(self.settings.database_url)
        with broker_connection(self.settings) as connection:
            declare_topology(connection)
        self.key_id = create_api_key(self.settings.database_url, "bench").id
        with session_scope(self.settings.database_url) as session:
            key = session.get(ApiKey, self.key_id)
            assert key is not None
            self.tenant_id = key.tenant_id
        self.outbox = Outbox(self.settings)

    def submit(self, due: bool = False) -> None:
        """Store a job and its outbox row in one transaction, as the API does."""
        now = utcnow()
        job_id = uuid.uuid4()
        with session_scope(self.settings.database_url) as session:
            session.add(
                Job(
                    id=job_id,
                    tenant_id=self.tenant_id,
                    api_key_id=self.key_id,
                    status=JobStatus.QUEUED,
                    query="Where is my order?",
                    request_hash="0" * 64,
                    created_at=now,
                    updated_at=now,
                )
            )
            session.flush()
            payload = {"job_id": str(job_id), "query": "Where is my order?"}
            row_id = self.outbox.add(session, job_id, payload, 0, now)
            if due:
                session.flush()
                row = session.get(OutboxMessage, row_id)
                assert row is not None
                row.next_attempt_at = now - timedelta(seconds=1)

    def clear(self) -> None:
        with session_scope(self.settings.database_url) as session:
            session.execute(delete(OutboxMessage))
            session.execute(delete(Job))
        with broker_connection(self.settings) as connection:
            INFERENCE_QUEUE(connection.default_channel).purge()


def relay_holding_a_transaction(backend: Backend) -> int:
    """The relay before leases: select, publish and delete inside one transaction."""
    outbox = backend.outbox
    published = 0
    with session_scope(backend.settings.database_url) as session:
        rows = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.next_attempt_at <= utcnow())
            .order_by(OutboxMessage.next_attempt_at)
            .limit(RELAY_BATCH)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            outbox.send(row.payload, row.priority)
            session.execute(delete(OutboxMessage).where(OutboxMessage.id == row.id))
            published += 1
    return published


def one_round(backend: Backend, relay: Callable[[Backend], int], backlog: int) -> dict[str, Any]:
    for _ in range(backlog):
        backend.submit(due=True)
    submits: list[tuple[float, float]] = []  # (started, seconds)
    stop = threading.Event()

    def submitter() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            backend.submit()
            submits.append((started, time.perf_counter() - started))
            time.sleep(SUBMIT_EVERY_S)

    thread = threading.Thread(target=submitter)
    thread.start()
    time.sleep(0.2)
    relay_started = time.perf_counter()
    published = relay(backend)
    relay_ended = time.perf_counter()
    stop.set()
    thread.join()
    assert published == backlog, (published, backlog)
    during = sorted(s for started, s in submits if relay_started <= started <= relay_ended)
    backend.clear()
    return {
        "relay_s": relay_ended - relay_started,
        "submits": len(during),
        "submit_p50_ms": 1000 * statistics.median(during) if during else 0.0,
        "submit_p95_ms": 1000 * during[int(0.95 * (len(during) - 1))] if during else 0.0,
        "submit_max_ms": 1000 * max(during) if during else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=RELAY_BATCH)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "outbox.json")
    args = parser.parse_args()
    strategies: dict[str, Callable[[Backend], int]] = {
        "leased (now)": lambda backend: backend.outbox.relay_once(),
        "transaction held (before)": relay_holding_a_transaction,
    }
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in strategies}
    with tempfile.TemporaryDirectory() as tmp:
        backend = Backend(Path(tmp))
        one_round(backend, strategies["leased (now)"], 20)  # warm-up: connections, pools
        for _ in range(args.rounds):
            for name, relay in strategies.items():
                rounds[name].append(one_round(backend, relay, args.backlog))
    rows = {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for name, results in rounds.items()
    }
    print(f"backlog {args.backlog} rows, {args.rounds} rounds, medians; submits every 5 ms")
    print(f"{'relay':<28} {'relay s':>8} {'submits':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, row in rows.items():
        print(
            f"{name:<28} {row['relay_s']:>8.3f} {row['submits']:>8.0f} {row['submit_p50_ms']:>8.2f}"
            f" {row['submit_p95_ms']:>8.2f} {row['submit_max_ms']:>8.2f}"
        )
    now, before = rows["leased (now)"], rows["transaction held (before)"]
    ratios = {
        key: round(before[key] / now[key], 2) if now[key] else None
        for key in ("submit_p50_ms", "submit_p95_ms", "submit_max_ms")
    }
    print(f"before / now: {ratios}")
    write_results(
        args.out,
        "outbox",
        backlog=args.backlog,
        rounds=args.rounds,
        rows=rows,
        before_over_now=ratios,
        all_rounds=rounds,
    )


if __name__ == "__main__":
    main()
