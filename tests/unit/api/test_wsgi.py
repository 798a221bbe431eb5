"""gunicorn's entry point: every API process relays the outbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_each_api_process_starts_an_outbox_relay(tmp_path: Path) -> None:
    probe = (
        "import threading, services.api.wsgi; "
        "print(','.join(sorted(t.name for t in threading.enumerate())))"
    )
    env = {
        **os.environ,
        "CHATQ_DATA_DIR": str(tmp_path),
        "CHATQ_DATABASE_URL": "",
        "CHATQ_BROKER_URL": "",
    }
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    )
    assert "outbox_relay" in completed.stdout.strip().split(",")
