"""Engines and sessions, one engine per process and URL.

SQLite is the embedded default and is shared by several processes (API, workers, post-processors),
so every connection turns on WAL (readers never block the writer) and waits for locks instead of
failing at once.

A Postgres connection taken from the pool is checked before it is handed out, without a round
trip where it can be: whatever the server sent to the idle connection is read (a restart or a
terminated backend says goodbye and closes it), and only a connection idle for
``PING_AFTER_IDLE_S`` or more is also pinged. SQLAlchemy's ``pool_pre_ping`` pinged on every
checkout: a round trip per transaction, 7 % of the API's CPU under a submit load. A connection
found dead is replaced, and so are all the pool's older ones, as ``pool_pre_ping`` did.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from psycopg.pq import ConnStatus
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
# A pooled Postgres connection unused this long is pinged before it is handed out: long enough
# that a busy pool never pings, short enough that a connection a firewall or an idle timeout
# dropped without a word is found before a request uses it.
PING_AFTER_IDLE_S = 5.0
_RETURNED_AT = "chatq_returned_at"  # the pool entry's info key: when it went back to the pool


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _take_over_sqlite_transactions(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling begins late and DEFERRED; SQLAlchemy emits BEGIN.
    dbapi_connection.isolation_level = None


def _begin_immediate(connection: Any) -> None:
    # A DEFERRED transaction that reads and then writes fails at once with SQLITE_BUSY when
    # another process wrote in between (WAL snapshots cannot be upgraded); IMMEDIATE takes the
    # write lock up front and waits for it under busy_timeout instead.
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        # ``autocommit()``: SQLAlchemy still "begins", but never commits; a BEGIN here would
        # leave the statement's write to be rolled back when the connection goes back
        return
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _note_return(_dbapi_connection: Any, entry: ConnectionPoolEntry) -> None:
    entry.info[_RETURNED_AT] = time.monotonic()


def _server_hung_up(dialect: Dialect, dbapi_connection: Any) -> bool:
    """Whether the server closed this idle connection, seen without a round trip.

    An idle connection expects nothing, so reading what arrived costs no wait: nothing, on a
    live one. A server that restarts or terminates the backend sends a FATAL message and
    closes; the first read may bring only the message, the second sees the end of the stream.
    """
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is None:  # not psycopg: only the idle ping applies
        return False
    try:
        pgconn.consume_input()
        pgconn.consume_input()
    except dialect.loaded_dbapi.Error:
        return True
    return bool(pgconn.status != ConnStatus.OK)


def _check_on_checkout(dialect: Dialect) -> Callable[[Any, ConnectionPoolEntry, Any], None]:
    """The pool's ``checkout`` listener: raises ``InvalidatePoolError`` for a dead connection,
    so the pool connects again (and drops its older connections, likely dead alike)."""

    def check(dbapi_connection: Any, entry: ConnectionPoolEntry, _proxy: Any) -> None:
        returned_at = entry.info.get(_RETURNED_AT)
        if returned_at is None:
            return  # connected for this checkout: alive
        if _server_hung_up(dialect, dbapi_connection):
            raise InvalidatePoolError("the server closed the pooled connection")
        if time.monotonic() - returned_at < PING_AFTER_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            raise InvalidatePoolError(f"the pooled connection failed its ping: {error!r}") from None

    return check


def make_private_sqlite_file(path: Path) -> None:
    """Create ``path`` (and a missing folder) for the owner alone: 0600 in a 0700 folder.

    The file holds webhook secrets and transcripts. SQLite gives the -wal, -shm and -journal
    files it creates beside a database the database file's own mode, so they follow. A file an
    older version left readable to others is narrowed too; an existing folder is left alone
    (it may be shared, such as /tmp).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for file in (path, *(path.with_name(path.name + s) for s in SQLITE_SIDE_FILES)):
        with suppress(FileNotFoundError):
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)


def create_db_engine(
    url: str, *, immediate_transactions: bool = True, durable: bool = True
) -> Engine:
    """An engine for ``url`` with chatq's connection settings.

    ``immediate_transactions`` (SQLite only) makes every transaction take the write lock when it
    begins, which serialises the processes sharing the file instead of failing them.
    ``durable=False`` (Postgres only): commits do not wait for the write-ahead log to reach the
    disk (``synchronous_commit=off``); see ``autocommit``.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if (
            parsed.database
            and parsed.database != ":memory:"
            and not parsed.database.startswith("file:")
        ):
            make_private_sqlite_file(Path(parsed.database))
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            hide_parameters=True,  # as for Postgres below: errors never carry parameters
        )
        event.listen(engine, "connect", _configure_sqlite_connection)
        if immediate_transactions:
            event.listen(engine, "connect", _take_over_sqlite_transactions)
            event.listen(engine, "begin", _begin_immediate)
        return engine
    # Statement parameters are customers' texts, webhook URLs and secrets: an error's message
    # (logged, returned by repr) must never carry them.
    if durable:
        pool: dict[str, Any] = {"pool_size": 10, "max_overflow": 20}
    else:
        # single short statements: a smaller pool beside the durable one, so that a process
        # holds at most 45 connections in all (Postgres allows 100 by default)
        pool = {"pool_size": 5, "max_overflow": 10}
        pool["connect_args"] = {"options": "-c synchronous_commit=off"}
    engine = create_engine(url, hide_parameters=True, **pool)
    # instead of pool_pre_ping (see the module's docstring)
    event.listen(engine.pool, "checkin", _note_return)
    event.listen(engine.pool, "checkout", _check_on_checkout(engine.dialect))
    return engine


_engines: dict[str, tuple[Engine, sessionmaker[Session]]] = {}
_engines_lock = threading.Lock()


def _engine_and_factory(url: str) -> tuple[Engine, sessionmaker[Session]]:
    with _engines_lock:
        if url not in _engines:
            engine = create_db_engine(url)
            # expire_on_commit=False: views read attributes after commit without a round trip.
            _engines[url] = (engine, sessionmaker(bind=engine, expire_on_commit=False))
        return _engines[url]


def get_engine(url: str) -> Engine:
    """The process's engine for ``url`` (one connection pool per database)."""
    return _engine_and_factory(url)[0]


def get_session_factory(url: str) -> sessionmaker[Session]:
    return _engine_and_factory(url)[1]


_lax_engines: dict[str, Engine] = {}


def _lax_engine(url: str) -> Engine:
    """The process's engine for ``url`` whose commits do not wait for the disk (Postgres;
    SQLite has one engine for both)."""
    if make_url(url).get_backend_name() != "postgresql":
        return get_engine(url)
    with _engines_lock:
        if url not in _lax_engines:
            _lax_engines[url] = create_db_engine(url, durable=False)
        return _lax_engines[url]


def dispose_engine(url: str) -> None:
    """Close the pooled connections to ``url`` (before dropping a database, say)."""
    with _engines_lock:
        entry = _engines.pop(url, None)
        lax = _lax_engines.pop(url, None)
    if entry is not None:
        entry[0].dispose()
    if lax is not None:
        lax.dispose()


@contextmanager
def transaction(url: str, *, durable: bool = True) -> Iterator[Connection]:
    """A connection in a transaction that commits on success and rolls back on error: for
    statements that need no ORM session (its unit of work costs more than a small INSERT).
    ``durable``: as for ``autocommit``."""
    with (get_engine(url) if durable else _lax_engine(url)).begin() as connection:
        yield connection


@contextmanager
def autocommit(url: str, *, durable: bool = True) -> Iterator[Connection]:
    """A connection outside any transaction: each statement commits on its own. For a single
    statement, which is atomic anyway, this saves the BEGIN and COMMIT round trips.

    ``durable=False``: on Postgres the commit does not wait for the write-ahead log to reach
    the disk. Only for writes that a crash of the database may take back without harm, because
    something else keeps the truth or repairs them, and which are on a request's or a job's
    path: a rate-limit bucket, an open-wait slot (it expires), an outbox row whose publish was
    confirmed (the relay publishes it again: a duplicate workers ignore), a worker's claim
    (the broker redelivers the job until its outcome is stored, durably). The order of commits
    is kept: a durable commit after it makes it durable too."""
    engine = get_engine(url) if durable else _lax_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        yield connection


def writes_in_with_clauses(url: str) -> bool:
    """Whether the database at ``url`` runs a statement that changes rows in a WITH clause
    (an INSERT or UPDATE … RETURNING as a CTE): Postgres does, SQLite does not. Where it
    does, several writes go in one statement and one round trip."""
    return get_engine(url).dialect.name == "postgresql"


@contextmanager
def read_session(url: str) -> Iterator[Session]:
    """A session for reading, outside any transaction: each query is one statement with a
    snapshot of its own, without the BEGIN and COMMIT round trips around it (two of a lone
    read's three). On SQLite it does not take the write lock either. It must not write:
    nothing it holds is flushed or committed."""
    with autocommit(url) as connection:
        session = Session(bind=connection, autoflush=False, expire_on_commit=False)
        try:
            yield session
        finally:
            session.close()


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = get_session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
