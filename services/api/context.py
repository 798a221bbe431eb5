"""What the API's request handlers share: settings, the outbox, job events."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from services.api.backpressure import QueueGate
from services.api.job_events import JobEvents
from services.api.jobs.group_commit import GroupCommit
from services.api.outbox import Outbox
from shared.config import Settings

EXTENSION_KEY = "chatq"


@dataclass
class ApiContext:
    settings: Settings
    outbox: Outbox
    job_events: JobEvents
    queue_gate: QueueGate
    new_jobs: GroupCommit


def api_context() -> ApiContext:
    return current_app.extensions[EXTENSION_KEY]
