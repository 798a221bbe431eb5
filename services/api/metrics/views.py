"""``GET /metrics`` (Prometheus text format) and the API's request metrics.

Public like ``/healthz``: what it shows is counts and latencies with tenant-free labels. An
operator who would rather not expose it keeps the port private or filters the path at the
proxy. The system gauges (queue depths, outbox backlog, dead webhooks) are read from the broker
and the database when scraped, so every API process answers the same.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from sqlalchemy import func, select

from services.api.context import api_context
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import DeliveryStatus, OutboxMessage, WebhookDelivery
from shared.messaging.broker import broker_connection
from shared.messaging.topology import (
    DEAD_LETTER_QUEUE,
    INFERENCE_QUEUE,
    POSTPROCESS_QUEUE,
    WEBHOOK_QUEUE,
    queue_depth,
)
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS, SystemGauges, exposition

blueprint = Blueprint("metrics", __name__)

QUEUES = (INFERENCE_QUEUE, POSTPROCESS_QUEUE, WEBHOOK_QUEUE, DEAD_LETTER_QUEUE)


@blueprint.get("/metrics")
def metrics() -> Response:
    """Every API process's metrics, and the system gauges."""
    settings = api_context().settings
    body, content_type = exposition(SystemGauges(lambda: read_system_gauges(settings)))
    return Response(body, content_type=content_type)


def read_system_gauges(settings: Settings) -> dict[str, Any]:
    values: dict[str, Any] = {}
    with session_scope(settings.database_url) as session:
        values["outbox_backlog"] = session.scalar(select(func.count(OutboxMessage.id))) or 0
        values["webhooks_dead"] = (
            session.scalar(
                select(func.count(WebhookDelivery.id)).where(
                    WebhookDelivery.status == DeliveryStatus.DEAD
                )
            )
            or 0
        )
    with broker_connection(settings) as connection:
        values["queues"] = {queue.name: queue_depth(connection, queue) for queue in QUEUES}
    return values


def install_request_metrics(app: Flask) -> None:
    """Count and time every request by its route template (``/v1/jobs/<job_id>``, never the
    path itself: one series per job id would swamp Prometheus)."""

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        HTTP_REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            HTTP_LATENCY.labels(request.method, endpoint).observe(time.perf_counter() - started)
        return response
