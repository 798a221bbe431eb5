"""``GET /openapi.json``: the document, and ``GET /docs``: the same as a page to read; open to
anyone (they hold no tenant's data)."""

from __future__ import annotations

import threading
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from services.api.context import api_context
from services.api.openapi.docs_page import render_docs
from services.api.openapi.document import build_document

blueprint = Blueprint("openapi", __name__)

_EXTENSION_KEY = "chatq.openapi"
_build_lock = threading.Lock()


def _document() -> dict[str, Any]:
    # Built on first request, once every blueprint is registered, then kept: the routes and
    # the settings of a running app do not change.
    extensions = current_app.extensions
    if _EXTENSION_KEY not in extensions:
        with _build_lock:
            if _EXTENSION_KEY not in extensions:
                extensions[_EXTENSION_KEY] = build_document(current_app, api_context().settings)
    return extensions[_EXTENSION_KEY]


@blueprint.get("/openapi.json")
def document() -> Response:
    return jsonify(_document())


@blueprint.get("/docs")
def docs() -> Response:
    return Response(render_docs(_document()), content_type="text/html; charset=utf-8")
