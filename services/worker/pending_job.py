"""A job as the worker holds it between its broker delivery and its settlement."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from services.worker.settlements import SettleableMessage
from shared.messaging.schemas import InferenceRequest


@dataclass
class PendingJob:
    request: InferenceRequest
    message: SettleableMessage
    key: str = field(default_factory=lambda: uuid.uuid4().hex)  # one per delivery

    @property
    def length_hint(self) -> int:
        """Characters of the prompt, for grouping similar lengths into one batch."""
        return len(self.request.query) + sum(len(t.content) for t in self.request.history)
