"""Where every benchmark writes its JSON: the figures plus when and on what they were taken."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def write_results(path: Path, benchmark: str, **figures: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": benchmark,
        "at": datetime.now(UTC).isoformat(),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        **figures,
    }
    path.write_text(json.dumps(record, indent=2))
    print(f"\nwrote {path}")
