"""What post-processing keeps of a conversation: the transcript and stored webhook payloads
anonymised (``<PHONE_1>``), with placeholders consistent across a session's turns.

The consistency comes from a keyed hash of each value (``shared.pii.PlaceholderMap``); the key
is ``CHATQ_PII_SECRET``, or a random key kept in ``<data_dir>/pii.key`` (mode 0600) so that the
embedded default needs no set-up. Every post-processor must use the same key.
"""

from __future__ import annotations

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
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(descriptor, "w") as key_file:
        key_file.write(secrets.token_hex(32))
    return path.read_bytes().strip()
