"""The Flask application factory."""

from __future__ import annotations

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from services.api.auth import install_access_control
from services.api.backpressure import QueueGate
from services.api.batches.views import blueprint as batches_blueprint
from services.api.chat.completions import blueprint as completions_blueprint
from services.api.chat.views import blueprint as chat_blueprint
from services.api.context import EXTENSION_KEY, ApiContext
from services.api.feedback.views import blueprint as feedback_blueprint
from services.api.health.views import blueprint as health_blueprint
from services.api.intents.views import blueprint as intents_blueprint
from services.api.job_events import JobEvents
from services.api.jobs.service import new_job_writer
from services.api.jobs.views import blueprint as jobs_blueprint
from services.api.keys.views import blueprint as keys_blueprint
from services.api.knowledge.views import blueprint as knowledge_blueprint
from services.api.metrics.views import blueprint as metrics_blueprint
from services.api.metrics.views import install_request_metrics
from services.api.models.views import blueprint as models_blueprint
from services.api.moderation.views import blueprint as moderation_blueprint
from services.api.openapi.views import blueprint as openapi_blueprint
from services.api.operator.views import blueprint as operator_blueprint
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
    assert isinstance(app.json, DefaultJSONProvider)  # Flask's own, unless an app sets another
    app.json.sort_keys = False
    if settings.api_trusted_proxies:
        # the client address for IP allowlists comes from X-Forwarded-For set by our proxies;
        # replacing wsgi_app is how Flask's documentation installs middleware
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.api_trusted_proxies)  # type: ignore[method-assign]
    app.extensions[EXTENSION_KEY] = ApiContext(
        settings=settings,
        outbox=Outbox(settings),
        job_events=JobEvents(settings.database_url),
        queue_gate=QueueGate(settings),
        new_jobs=new_job_writer(settings),
    )
    install_request_log(app)
    install_request_metrics(app)
    install_access_control(app, settings)
    register_problem_handlers(app)
    for blueprint in (
        jobs_blueprint,
        batches_blueprint,
        feedback_blueprint,
        models_blueprint,
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
        operator_blueprint,
    ):
        app.register_blueprint(blueprint)
    return app
