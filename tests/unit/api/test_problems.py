"""The problem catalogue: one (slug, status, title) per kind of problem, and every problem the
API raises names its kind from it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from services.api.openapi.responses import ProblemDetails
from services.api.problems import Problem, ProblemType

API_ROOT = Path(__file__).resolve().parents[3] / "services" / "api"


def test_every_type_has_its_own_slug() -> None:
    slugs = [kind.slug for kind in ProblemType]
    assert len(slugs) == len(set(slugs))


@pytest.mark.parametrize("kind", list(ProblemType), ids=lambda kind: kind.slug)
def test_each_type_answers_a_body_the_openapi_document_allows(kind: ProblemType) -> None:
    response = Problem(kind, "what happened", job_id="j-1").to_response()
    assert response.status_code == kind.status
    assert response.mimetype == "application/problem+json"
    body = json.loads(response.get_data())
    ProblemDetails.model_validate(body)
    assert body == {
        "type": f"urn:chatq:problem:{kind.slug}",
        "title": kind.title,
        "status": kind.status,
        "detail": "what happened",
        "job_id": "j-1",
    }


def test_headers_go_on_the_response_not_in_the_body() -> None:
    response = Problem(ProblemType.QUEUE_FULL, "full", headers={"Retry-After": "5"}).to_response()
    assert response.headers["Retry-After"] == "5"
    assert "headers" not in json.loads(response.get_data())


def test_an_http_error_gets_its_generic_type_and_keeps_an_unknown_status() -> None:
    assert Problem.for_status(404, "gone").to_response().status_code == 404
    assert Problem.for_status(404, "gone").kind is ProblemType.NOT_FOUND
    unknown = Problem.for_status(418, "teapot")
    assert unknown.kind is ProblemType.ERROR
    response = unknown.to_response()
    assert response.status_code == 418
    assert json.loads(response.get_data())["status"] == 418


def problem_calls() -> tuple[int, list[str]]:
    """How many ``Problem(...)`` calls services/api makes, and those whose first argument is
    not ``ProblemType.X``."""
    calls, found = 0, []
    for path in sorted(API_ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Problem"):
                continue
            calls += 1
            first = node.args[0] if node.args else None
            if not (
                isinstance(first, ast.Attribute)
                and isinstance(first.value, ast.Name)
                and first.value.id == "ProblemType"
                and first.attr in ProblemType.__members__
            ):
                found.append(f"{path.relative_to(API_ROOT)}:{node.lineno}")
    return calls, found


def test_every_problem_the_api_raises_names_a_catalogue_type() -> None:
    calls, without_type = problem_calls()
    assert calls > 30  # the scan sees the views
    assert without_type == []
