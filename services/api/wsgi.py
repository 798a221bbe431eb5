"""gunicorn's entry point: ``gunicorn services.api.wsgi:app``.

gunicorn imports this in each worker process after the fork, so each process starts its own
outbox relay and batch feeder here (never in ``create_app``: tests build many apps). Leases keep
the relays of all processes off each other's rows; services/api/outbox.py says why the relay
lives here, services/api/batches/feeder.py why the feeder does.
"""

from services.api.app import create_app
from services.api.batches.feeder import BatchFeeder
from services.api.context import EXTENSION_KEY
from services.api.outbox import OutboxRelay
from shared.config import get_settings
from shared.logs import configure_logging

configure_logging(get_settings(), "api")
app = create_app()
context = app.extensions[EXTENSION_KEY]
OutboxRelay(context.outbox).start()
BatchFeeder(context.settings, context.outbox).start()
