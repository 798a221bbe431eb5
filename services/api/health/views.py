"""Liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from services.api.context import api_context
from services.api.problems import Problem, ProblemType
from shared.db.engine import get_engine
from shared.logs import get_logger

log = get_logger(__name__)

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    """The process answers."""
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> Response:
    """The database and the broker are reachable."""
    ctx = api_context()
    failures = {}
    try:
        with get_engine(ctx.settings.database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        failures["database"] = repr(error)
    try:
        ctx.outbox.check()
    except Exception as error:
        failures["broker"] = repr(error)
    if failures:
        log.warning("not_ready", **failures)
        raise Problem(
            ProblemType.NOT_READY,
            "A dependency is unreachable: " + ", ".join(failures),
            checks={name: "down" for name in failures},
            headers={"Retry-After": "5"},
        )
    return jsonify(status="ready", checks={"database": "up", "broker": "up"})
