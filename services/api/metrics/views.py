"""``GET /metrics`` (Prometheus text format) and the API's request metrics.

Public like ``/healthz``: what it shows is counts and latencies with tenant-free labels. An
operator who would rather not expose it keeps the port private or filters the path at the
proxy. The system gauges (queue depths, outbox backlog, dead webhooks) are read from the broker
and the database when scraped, so every API process answers the same.
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, g, request

from services.api.context import api_context
from shared.config import Settings
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS, SystemGauges, exposition
from shared.system_state import SystemState, read_broker_state, read_database_state

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
def metrics() -> Response:
    """Every API process's metrics, and the system gauges."""
    settings = api_context().settings
    body, content_type = exposition(SystemGauges(lambda: read_system_state(settings)))
    return Response(body, content_type=content_type)


def read_system_state(settings: Settings) -> SystemState:
    state = SystemState()
    read_database_state(settings, state)
    read_broker_state(settings, state)
    return state


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
