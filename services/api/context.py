"""What the API's request handlers share: settings and the job publisher."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from services.api.publisher import JobPublisher
from shared.config import Settings

EXTENSION_KEY = "chatq"


@dataclass
class ApiContext:
    settings: Settings
    publisher: JobPublisher


def api_context() -> ApiContext:
    return current_app.extensions[EXTENSION_KEY]
