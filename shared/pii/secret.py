"""The key of the anonymiser's placeholders: what post-processing keeps of a conversation (the
transcript and stored webhook payloads) is anonymised (``<PHONE_1>``), with placeholders
consistent across a session's turns; the API uses the same key for feedback given after the
retention purge, and ``chatq feedback export`` for the rows it exports.

The consistency comes from a keyed hash of each value (``shared.pii.PlaceholderMap``); the key
is ``CHATQ_PII_SECRET``, or a random key kept in ``<data_dir>/pii.key`` (mode 0600) so that the
embedded default needs no set-up. Every post-processor and API process must use the same key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from functools import cache
from pathlib import Path

from shared.config import Settings

KEY_FILE_NAME = "pii.key"


def pii_secret(settings: Settings) -> bytes:
    if settings.pii_secret is not None:
        return settings.pii_secret.get_secret_value().encode()
    return _secret_from_file(settings.data_dir / KEY_FILE_NAME)


@cache
def _secret_from_file(path: Path) -> bytes:
    """The key in ``path``, made by the first process that needs it.

    Several processes start at once and each may be first: the key is written whole to a file
    of this process's own, then linked into place, which succeeds for one of them only and
    never shows the others a file that is still empty (created, but not yet written).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as key_file:
                key_file.write(secrets.token_hex(32))
                key_file.flush()
                os.fsync(key_file.fileno())
            with contextlib.suppress(FileExistsError):  # another process was first: its key
                os.link(draft, path)
        finally:
            draft.unlink()
    secret = path.read_bytes().strip()
    if not secret:
        raise RuntimeError(
            f"{path} is empty: delete it (a new key is made) or set CHATQ_PII_SECRET"
        )
    return secret
