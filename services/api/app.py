"""The Flask application factory."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from services.api.auth import install_access_control
from services.api.backpressure import QueueGate
from services.api.chat.completions import blueprint as completions_blueprint
from services.api.chat.views import blueprint as chat_blueprint
from services.api.context import EXTENSION_KEY, ApiContext
from services.api.health.views import blueprint as health_blueprint
from services.api.intents.views import blueprint as intents_blueprint
from services.api.job_events import JobEvents
from services.api.jobs.views import blueprint as jobs_blueprint
from services.api.keys.views import blueprint as keys_blueprint
from services.api.knowledge.views import blueprint as knowledge_blueprint
from services.api.metrics.views import blueprint as metrics_blueprint
from services.api.metrics.views import install_request_metrics
from services.api.moderation.views import blueprint as moderation_blueprint
from services.api.openapi.views import blueprint as openapi_blueprint
from services.api.outbox import Outbox
from services.api.problems import register_problem_handlers
from services.api.request_log import install_request_log
from services.api.sessions.views import blueprint as sessions_blueprint
from services.api.webhooks.views import blueprint as webhooks_blueprint
from shared.config import Settings, get_settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask("chatq")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if settings.api_trusted_proxies:
        # the client address for IP allowlists comes from X-Forwarded-For set by our proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.api_trusted_proxies)  # type: ignore[method-assign]
    app.extensions[EXTENSION_KEY] = ApiContext(
        settings=settings,
        outbox=Outbox(settings),
        job_events=JobEvents(settings.database_url),
        queue_gate=QueueGate(settings),
    )
    install_request_log(app)
    install_request_metrics(app)
    install_access_control(app, settings)
    register_problem_handlers(app)
    for blueprint in (
        jobs_blueprint,
        chat_blueprint,
        completions_blueprint,
        webhooks_blueprint,
        knowledge_blueprint,
        intents_blueprint,
        keys_blueprint,
        moderation_blueprint,
        sessions_blueprint,
        health_blueprint,
        metrics_blueprint,
        openapi_blueprint,
    ):
        app.register_blueprint(blueprint)
    return app
