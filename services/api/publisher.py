"""Publishing inference requests from the API's threads through kombu's producer pool."""

from __future__ import annotations

from typing import Any

from kombu.pools import producers

from shared.config import Settings
from shared.messaging.broker import broker_connection, publish_inference_request


class JobPublisher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._connection = broker_connection(settings)

    def publish(self, payload: dict[str, Any], priority: int) -> None:
        """Publish and (on RabbitMQ) wait for the broker's confirm; raises if it cannot."""
        timeout = self.settings.publish_timeout_s
        with producers[self._connection].acquire(block=True, timeout=timeout) as producer:
            publish_inference_request(producer, payload, priority, timeout)

    def check(self) -> None:
        """Raise unless the broker accepts a connection now."""
        with broker_connection(self.settings) as connection:
            connection.ensure_connection(max_retries=1, timeout=self.settings.publish_timeout_s)
