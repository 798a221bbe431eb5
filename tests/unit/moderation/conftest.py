from __future__ import annotations

import pytest

from shared.moderation import Moderator


@pytest.fixture(scope="session")
def base() -> Moderator:
    """The shipped lists and the English classifier (built once: ~1 s)."""
    return Moderator.base()
