"""The OpenAPI document: generated from the app's routes and the pydantic models, never drifting
from them. (tests/e2e/test_fuzz.py checks the running API's answers against it.)"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from flask import Flask, jsonify
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from services.api.app import create_app
from services.api.openapi.document import build_document, documented_rules, openapi_path
from services.api.openapi.operations import OPERATIONS
from shared.config import Settings

PROBLEM = "application/problem+json"
REQUEST_MODELS = {
    "completions.create": "ChatCompletionRequest",
    "jobs.create_job": "JobCreate",
    "chat.chat": "ChatRequest",
    "knowledge.put_document": "DocumentIn",
    "knowledge.put_faq": "FaqIn",
    "intents.put_intent": "IntentIn",
    "intents.put_tenant_settings": "TenantSettings",
    "moderation.put_list": "ModerationListIn",
    "keys.post_key": "KeyCreate",
    "keys.rotate": "KeyRotate",
    "feedback.give_feedback": "FeedbackCreate",
    "batches.create_job_batch": "JobBatchCreate",
}
# bodies of JSON lines: the model of one line
JSON_LINES_REQUEST_MODELS = {"batches.create_batch": "BatchRequestLine"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url="", broker_url="")


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def document(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/openapi.json")  # no key: the document is public
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        operation["operationId"]: operation
        for item in document["paths"].values()
        for operation in item.values()
    }


def not_documented(app: Flask, document: dict[str, Any]) -> list[str]:
    """Every (method, route) of the app that the document lacks or only names."""
    missing = []
    for rule, methods in documented_rules(app):
        item = document["paths"].get(openapi_path(rule), {})
        for method in methods:
            operation = item.get(method)
            if operation is None or operation.get("x-undocumented"):
                missing.append(f"{method.upper()} {rule.rule} ({rule.endpoint})")
    return missing


def test_every_route_of_the_app_is_documented(app: Flask, document: dict[str, Any]) -> None:
    assert not_documented(app, document) == []
    served = {(method, path) for path, item in document["paths"].items() for method in item}
    assert len(served) == sum(len(methods) for _rule, methods in documented_rules(app))
    assert ("get", "/openapi.json") in served
    assert ("post", "/v1/jobs") in served
    assert ("get", "/v1/jobs/{job_id}") in served


def test_a_route_added_without_a_table_entry_is_caught(settings: Settings) -> None:
    app = create_app(settings)

    @app.post("/v1/something-new/<thing_id>")
    def something_new(thing_id: str) -> Any:
        return jsonify(id=thing_id)

    document = build_document(app, settings)
    assert not_documented(app, document) == ["POST /v1/something-new/<thing_id> (something_new)"]
    operation = document["paths"]["/v1/something-new/{thing_id}"]["post"]
    assert operation["parameters"][0]["name"] == "thing_id"


def test_the_table_names_only_routes_that_exist(app: Flask) -> None:
    endpoints = {rule.endpoint for rule, _methods in documented_rules(app)}
    assert set(OPERATIONS) - endpoints == set()


def test_every_path_parameter_has_a_schema_of_its_own(app: Flask) -> None:
    for rule, _methods in documented_rules(app):
        declared = set(OPERATIONS[rule.endpoint].path)
        assert declared == set(rule.arguments), rule.rule


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    OPENAPI_31_VALIDATOR.validate(document)
    for name, schema in document["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_links_lead_to_operations_and_their_parameters(document: dict[str, Any]) -> None:
    by_id = operations(document)
    links = [
        link
        for operation in by_id.values()
        for response in operation["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert len(links) >= 8
    for link in links:
        target = by_id[link["operationId"]]
        names = {parameter["name"] for parameter in target["parameters"]}
        assert set(link["parameters"]) <= names, link


def test_request_bodies_are_the_pydantic_request_models(document: dict[str, Any]) -> None:
    by_id = operations(document)
    with_body = {op_id for op_id, op in by_id.items() if "requestBody" in op}
    assert with_body == set(REQUEST_MODELS) | set(JSON_LINES_REQUEST_MODELS)
    for operation_id, model in REQUEST_MODELS.items():
        body = by_id[operation_id]["requestBody"]
        schema = body["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}
    assert by_id["keys.rotate"]["requestBody"]["required"] is False
    job = document["components"]["schemas"]["JobCreate"]
    assert job["required"] == ["query"]
    assert job["additionalProperties"] is False  # unknown fields are refused
    assert job["properties"]["params"] == {"$ref": "#/components/schemas/ParamsIn"}


def test_jobs_answer_with_the_job_view(document: dict[str, Any]) -> None:
    by_id = operations(document)
    job = {"$ref": "#/components/schemas/JobView"}
    assert by_id["jobs.create_job"]["responses"]["202"]["content"]["application/json"] == {
        "schema": job
    }
    for operation_id, status in (("jobs.get_job", "200"), ("chat.chat", "200")):
        assert by_id[operation_id]["responses"][status]["content"]["application/json"] == {
            "schema": job
        }
    view = document["components"]["schemas"]["JobView"]
    assert {"id", "status", "response", "moderation", "links"} <= set(view["properties"])


def test_errors_are_problem_details(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["ProblemDetails"]
    assert {"type", "title", "status", "detail", "instance"} <= set(problem["properties"])
    assert problem["additionalProperties"] is True  # extension members
    for operation in operations(document).values():
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert list(response["content"]) == [PROBLEM], (operation["operationId"], status)


def test_keyed_routes_need_the_bearer_scheme_and_public_ones_do_not(
    document: dict[str, Any],
) -> None:
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    public = {
        "health.healthz",
        "health.readyz",
        "metrics.metrics",
        "openapi.docs",
        "openapi.document",
        "operator.page",
    }
    for operation_id, operation in operations(document).items():
        if operation_id in public:
            assert operation["security"] == []
            assert "401" not in operation["responses"]
        else:
            assert operation["security"] == [{"bearerAuth": []}], operation_id
            assert {"401", "403", "429"} <= set(operation["responses"]), operation_id
    assert operations(document)["keys.post_key"]["x-required-scope"] == "admin"
    assert operations(document)["jobs.get_job"]["x-required-scope"] == "jobs:read"


def test_bounds_from_the_settings_are_written_in(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url="",
        broker_url="",
        max_long_poll_s=7,
        max_query_chars=99,
        max_new_tokens_limit=33,
        default_max_new_tokens=20,
    )
    document = build_document(create_app(settings), settings)
    wait = operations(document)["jobs.get_job"]["parameters"][1]
    assert (wait["name"], wait["schema"]["maximum"]) == ("wait", 7)
    schemas = document["components"]["schemas"]
    assert schemas["JobCreate"]["properties"]["query"]["maxLength"] == 99
    assert schemas["ChatRequest"]["properties"]["query"]["maxLength"] == 99
    tokens = schemas["ParamsIn"]["properties"]["max_new_tokens"]["anyOf"]
    bounds = {k: v for k, v in tokens[0].items() if k in ("type", "minimum", "maximum")}
    assert bounds == {"type": "integer", "minimum": 1, "maximum": 33}


def test_the_docs_page_shows_every_operation_of_the_document(
    app: Flask, document: dict[str, Any]
) -> None:
    response = app.test_client().get("/docs")  # no key: public like the document
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for operation_id, operation in operations(document).items():
        assert f'id="{operation_id}"' in page
        assert html.escape(operation["summary"]) in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "(scope <code>jobs:write</code>)" in page  # a keyed route says what it needs


def test_json_lines_bodies_are_arrays_of_their_line_model(document: dict[str, Any]) -> None:
    by_id = operations(document)
    for operation_id, model in JSON_LINES_REQUEST_MODELS.items():
        content = by_id[operation_id]["requestBody"]["content"]
        assert list(content) == ["application/jsonl"]
        schema = content["application/jsonl"]["schema"]
        assert schema == {
            "type": "array",
            "items": {"$ref": f"#/components/schemas/{model}"},
            "minItems": 1,
        }
    line = document["components"]["schemas"]["BatchRequestLine"]
    assert line["required"] == ["custom_id", "body"]
    assert line["properties"]["body"] == {"$ref": "#/components/schemas/JobCreate"}
