"""``transaction`` and ``autocommit`` on SQLite (shared/db/engine.py): chatq's SQLite engine
begins every transaction IMMEDIATE itself, and a statement run outside a transaction must not
get such a BEGIN that nothing commits (its write would be rolled back when the connection goes
back to the pool)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.db.engine import autocommit, dispose_engine, get_engine, transaction


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    database_url = f"sqlite:///{tmp_path / 'scopes.db'}"
    with transaction(database_url) as connection:
        connection.execute(text("CREATE TABLE notes (body TEXT)"))
    yield database_url
    dispose_engine(database_url)


def notes(url: str) -> list[str]:
    with get_engine(url).connect() as connection:
        return list(connection.scalars(text("SELECT body FROM notes ORDER BY body")))


def test_a_statement_outside_a_transaction_is_kept(url: str) -> None:
    with autocommit(url) as connection:
        connection.execute(text("INSERT INTO notes VALUES ('kept')"))
    assert notes(url) == ["kept"]


def test_a_transaction_commits_on_success_and_rolls_back_on_error(url: str) -> None:
    with transaction(url) as connection:
        connection.execute(text("INSERT INTO notes VALUES ('committed')"))
    with pytest.raises(RuntimeError), transaction(url) as connection:
        connection.execute(text("INSERT INTO notes VALUES ('rolled back')"))
        raise RuntimeError("the caller failed")
    assert notes(url) == ["committed"]
