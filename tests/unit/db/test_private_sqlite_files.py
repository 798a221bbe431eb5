"""SQLite files hold webhook secrets and transcripts: the owner's alone, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.config import Settings
from shared.db.engine import create_db_engine
from shared.messaging.broker import broker_connection
from shared.messaging.topology import declare_topology


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    # the usual umask, which leaves new files readable to everyone
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def write_something(url: str) -> None:
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE secrets (value TEXT)"))
            connection.execute(text("INSERT INTO secrets VALUES ('whsec_x')"))
        # WAL mode: the -wal and -shm files exist while a connection is open
        with engine.connect() as connection:
            connection.execute(text("SELECT value FROM secrets")).all()
            files = {p.name: mode(p) for p in Path(url.removeprefix("sqlite:///")).parent.iterdir()}
    finally:
        engine.dispose()
    assert files == {"chatq.db": 0o600, "chatq.db-wal": 0o600, "chatq.db-shm": 0o600}


def test_a_new_database_its_wal_files_and_its_folder_are_the_owners_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_something(f"sqlite:///{data / 'chatq.db'}")
    assert mode(data) == 0o700


def test_a_database_left_readable_by_an_older_version_is_narrowed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "chatq.db").touch(mode=0o644)
    assert mode(data / "chatq.db") == 0o644
    write_something(f"sqlite:///{data / 'chatq.db'}")


def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    engine = create_db_engine(f"sqlite:///{shared / 'chatq.db'}")
    engine.dispose()
    assert mode(shared) == 0o755
    assert mode(shared / "chatq.db") == 0o600


def test_the_embedded_brokers_files_are_the_owners_alone(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url="", broker_url="")
    with broker_connection(settings) as connection:
        declare_topology(connection)
        broker_files = {p.name: mode(p) for p in settings.data_dir.glob("broker.db*")}
    assert broker_files["broker.db"] == 0o600
    assert set(broker_files.values()) == {0o600}
    assert mode(settings.data_dir) == 0o700
