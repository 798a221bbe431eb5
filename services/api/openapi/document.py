"""Builds the OpenAPI 3.1 document from the app itself.

Every rule of ``app.url_map`` becomes an operation (HEAD and OPTIONS, which Flask adds to every
route on its own, are left out); its path parameters come from the rule, whether it needs a key
and which scope from the view (``@require_api_key`` marks it), and its bodies and parameters from
``OPERATIONS``. Schemas are the pydantic models' own JSON Schema (2020-12, which OpenAPI 3.1
uses as is), with the bounds the models read from the settings at validation time written in.
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from werkzeug.routing import Rule

from services.api.openapi.operations import OPERATIONS, Operation, Parameter
from services.api.openapi.responses import ProblemDetails
from services.api.problems import PROBLEM_CONTENT_TYPE
from shared.config import Settings

Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
SECURITY_SCHEME = "bearerAuth"
IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})
REF_TEMPLATE = "#/components/schemas/{model}"
# a variable of a Werkzeug rule: <name>, <converter:name>, <converter(args):name>
RULE_VARIABLE = re.compile(r"<(?:[^<>]*:)?(\w+)>")

# Problems every route of a kind can answer, whatever the route.
KEYED_PROBLEMS = {
    401: "Missing, unknown, revoked or expired API key.",
    403: "The key lacks the scope this route needs, or is used from a network it may not be.",
    429: "Rate limit, open-wait cap or queue share exceeded; see `Retry-After`.",
    503: "The database is unreachable; nothing was stored. Retry shortly.",
}
BODY_PROBLEMS = {
    400: "The body is not JSON.",
    413: "The body is larger than CHATQ_MAX_REQUEST_BYTES.",
    415: "The body is not sent as `application/json`.",
    422: "The body is invalid: `errors` lists every invalid field.",
}
PATH_PROBLEMS = {404: "Not found."}
# request bodies of one JSON document a line (JSON Lines, NDJSON)
JSON_SEQUENCES = frozenset({"application/jsonl", "application/x-ndjson"})
# the HTTP server refuses these before the app sees the request, on any route
SERVER_REFUSALS = {
    400: "A malformed request.",
    414: "The request line (the URL) is too long.",
    431: "The header fields are too large.",
}

HEADERS: dict[str, Schema] = {
    "Location": {"description": "Where the created resource is.", "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}},
}


def openapi_path(rule: Rule) -> str:
    """``/v1/jobs/<job_id>`` → ``/v1/jobs/{job_id}`` (converters included: ``<int:n>``)."""
    return RULE_VARIABLE.sub(r"{\1}", rule.rule)


def documented_rules(app: Flask) -> list[tuple[Rule, list[str]]]:
    """The rules the document holds, each with its methods (lower case), in url_map order."""
    rules = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = sorted(method.lower() for method in (rule.methods or set()) - IMPLICIT_METHODS)
        rules.append((rule, methods))
    return rules


def build_document(app: Flask, settings: Settings) -> dict[str, Any]:
    models = _ModelSchemas()
    paths: dict[str, dict[str, Any]] = {}
    for rule, methods in documented_rules(app):
        view = app.view_functions[rule.endpoint]
        for method in methods:
            operation_id = rule.endpoint if len(methods) == 1 else f"{rule.endpoint}.{method}"
            paths.setdefault(openapi_path(rule), {})[method] = _operation(
                rule, operation_id, OPERATIONS.get(rule.endpoint), view, settings, models
            )
    schemas = models.resolve()
    _write_settings_bounds(schemas, settings)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "chatq",
            "version": _version(),
            "description": (
                "Asynchronous chat inference: submit a job, then poll it, wait for it or "
                "receive its webhook. Errors are RFC 9457 `application/problem+json`."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: `Authorization: Bearer <key>`.",
                }
            },
        },
    }


def _version() -> str:
    try:
        return metadata.version("chatq")
    except metadata.PackageNotFoundError:
        return "0"


def _operation(
    rule: Rule,
    operation_id: str,
    spec: Operation | None,
    view: Any,
    settings: Settings,
    models: _ModelSchemas,
) -> dict[str, Any]:
    scope = getattr(view, "required_scope", None)
    operation: dict[str, Any] = {"operationId": operation_id}
    if spec is None:
        operation["x-undocumented"] = True
    else:
        operation["summary"] = spec.summary
        operation["tags"] = [spec.tag]
        if spec.description:
            operation["description"] = spec.description
    path_schemas = spec.path if spec else {}
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": path_schemas.get(name, {"type": "string"}),
        }
        for name in sorted(rule.arguments)
    ]
    parameters += [_parameter(p, settings) for p in (spec.parameters if spec else ())]
    if parameters:
        operation["parameters"] = parameters
    if spec is not None and spec.body is not None:
        schema = models.ref(spec.body, "validation")
        if spec.body_media_type in JSON_SEQUENCES:
            # OpenAPI 3.2's reading of a sequential media type: its items as an array
            schema = {"type": "array", "items": schema, "minItems": 1}
        operation["requestBody"] = {
            "required": spec.body_required,
            "content": {spec.body_media_type: {"schema": schema}},
        }
    if scope is None:
        operation["security"] = []
    else:
        operation["security"] = [{SECURITY_SCHEME: []}]
        operation["x-required-scope"] = str(scope)

    responses: dict[str, Any] = {}
    for status, reply in (spec.replies if spec else {}).items():
        response: dict[str, Any] = {"description": reply.description}
        if reply.model is not None:
            schema = models.ref(reply.model, "serialization")
            response["content"] = {"application/json": {"schema": schema}}
            if reply.text is not None:  # the same answer in another form on request (streams)
                response["content"][reply.text] = {"schema": _text_schema(reply.text)}
        elif reply.text is not None:
            response["content"] = {reply.text: {"schema": _text_schema(reply.text)}}
        if reply.headers:
            response["headers"] = {name: HEADERS[name] for name in reply.headers}
        if reply.links:
            response["links"] = {
                name: {"operationId": link.operation_id, "parameters": link.parameters}
                for name, link in reply.links.items()
            }
        responses[str(status)] = response
    problems = dict(SERVER_REFUSALS)
    if scope is not None:
        problems |= KEYED_PROBLEMS
    if spec is not None and spec.body is not None:
        problems |= BODY_PROBLEMS
    if rule.arguments:
        problems |= PATH_PROBLEMS
    problems |= spec.problems if spec else {}
    problem = models.ref(ProblemDetails, "serialization")
    for status, description in sorted(problems.items()):
        response = {
            "description": description,
            "content": {PROBLEM_CONTENT_TYPE: {"schema": problem}},
        }
        if status in (429, 503):
            response["headers"] = {"Retry-After": HEADERS["Retry-After"]}
        responses[str(status)] = response
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _parameter(parameter: Parameter, settings: Settings) -> dict[str, Any]:
    schema = parameter.schema(settings) if callable(parameter.schema) else parameter.schema
    return {
        "name": parameter.name,
        "in": parameter.where,
        "required": parameter.required,
        "description": parameter.description,
        "schema": schema,
    }


class _ModelSchemas:
    """Collects the models the operations use; ``resolve`` turns them into components.

    Refs are handed out before the schemas exist (``models_json_schema`` needs every model at
    once to name them consistently), then rewritten to the names pydantic chose.
    """

    def __init__(self) -> None:
        self._wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = []
        self._refs: list[tuple[tuple[type[BaseModel], JsonSchemaMode], Schema]] = []

    def ref(self, model: type[BaseModel], mode: JsonSchemaMode) -> Schema:
        if (model, mode) not in self._wanted:
            self._wanted.append((model, mode))
        placeholder: Schema = {}
        self._refs.append(((model, mode), placeholder))
        return placeholder

    def resolve(self) -> dict[str, Schema]:
        names, definitions = models_json_schema(self._wanted, ref_template=REF_TEMPLATE)
        for key, placeholder in self._refs:
            placeholder.update(names[key])
        return dict(sorted(definitions.get("$defs", {}).items()))


def _bounded(schema: Schema, **bounds: Any) -> None:
    """Add ``bounds`` to a property's schema, or to its non-null branch when it is optional."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") != "null":
            branch.update(bounds)


def _write_settings_bounds(schemas: dict[str, Schema], settings: Settings) -> None:
    """The bounds the request models check against the settings (``ValidationInfo.context``),
    which their own JSON Schema cannot know."""
    for name in ("JobCreate", "ChatRequest"):
        properties = schemas.get(name, {}).get("properties", {})
        if "query" in properties:
            _bounded(properties["query"], maxLength=settings.max_query_chars)
        if "history" in properties:
            _bounded(properties["history"], maxItems=settings.max_history_messages)
    params = schemas.get("ParamsIn", {}).get("properties", {})
    if "max_new_tokens" in params:
        _bounded(params["max_new_tokens"], maximum=settings.max_new_tokens_limit)


# One server-sent event, as clients (and schemathesis) read a text/event-stream body: the
# event's name and its data (JSON text here), one schema per event.
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}


def _text_schema(media_type: str) -> dict[str, Any]:
    return dict(SSE_EVENT_SCHEMA) if media_type == "text/event-stream" else {"type": "string"}
