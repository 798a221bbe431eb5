"""The PII key file of the embedded default: made once, whole, whichever process is first."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from shared.pii.secret import _secret_from_file


def read_key(path: str) -> bytes:
    return _secret_from_file(Path(path))


def test_processes_starting_together_all_get_the_same_whole_key(tmp_path: Path) -> None:
    path = tmp_path / "data" / "pii.key"
    # fresh processes (their cache empty), all reaching for the key that does not exist yet
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        keys = pool.map(read_key, [str(path)] * 32)
    assert len(set(keys)) == 1
    assert len(keys[0]) == 64 and path.read_bytes().strip() == keys[0]
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["pii.key"]  # no drafts left behind


def test_an_empty_key_file_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "pii.key"
    path.write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"delete it .* or set CHATQ_PII_SECRET"):
        _secret_from_file(path)
