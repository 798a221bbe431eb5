"""HTTP routes of the operator dashboard: the page (public, it holds no data) and its data
(``operator`` scope: every tenant's figures)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from services.api.auth import require_api_key
from services.api.context import api_context
from services.api.operator.page import CONTENT_SECURITY_POLICY, PAGE
from services.api.operator.protocol import DashboardQuery
from services.api.operator.service import read_dashboard
from shared.api_keys import Scope

blueprint = Blueprint("operator", __name__)


@blueprint.get("/dashboard")
def page() -> Response:
    response = Response(PAGE, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@blueprint.get("/v1/operator/dashboard")
@require_api_key(Scope.OPERATOR)
def dashboard() -> Response:
    query = DashboardQuery.from_query(request.args.to_dict(flat=False))
    figures = read_dashboard(api_context().settings, query.window)
    response = jsonify(figures.model_dump(mode="json"))
    response.headers["Cache-Control"] = "no-store"  # every tenant's traffic: keep no copy
    return response
