"""gunicorn's entry point: ``gunicorn services.api.wsgi:app``."""

from services.api.app import create_app
from shared.config import get_settings
from shared.logs import configure_logging

configure_logging(get_settings(), "api")
app = create_app()
