"""Every API answer carries a request id, and the lines a request logs carry it (and the job's
id when the request is about a job), in the JSON that every process writes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.config import LogFormat
from tests.integration.conftest import TenantApi
from tests.integration.test_database_error_logs import chatq_logging

pytestmark = pytest.mark.integration


def logged_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_request_gets_an_id_that_its_answer_and_its_log_lines_carry(
    api: TenantApi, capsys: pytest.CaptureFixture[str]
) -> None:
    with chatq_logging(api.settings, LogFormat.JSON):
        given = api.client.get("/v1/tenant", headers={**api.auth(), "X-Request-Id": "abc-123"})
        fresh = api.client.get("/v1/tenant", headers=api.auth())
        odd = api.client.get("/v1/tenant", headers={**api.auth(), "X-Request-Id": "a b\tc"})
    lines = logged_lines(capsys.readouterr().err)

    assert given.headers["X-Request-Id"] == "abc-123"  # the caller's, to follow it through
    assert len(fresh.headers["X-Request-Id"]) == 32  # a new one
    assert odd.headers["X-Request-Id"] not in ("a b\tc", fresh.headers["X-Request-Id"])
    access = [line for line in lines if line["event"] == "http_request"]
    assert [line["request_id"] for line in access] == [
        "abc-123",
        fresh.headers["X-Request-Id"],
        odd.headers["X-Request-Id"],
    ]
    assert access[0] | {"method": "GET", "path": "/v1/tenant", "status": 200} == access[0]
    assert access[0]["duration_ms"] >= 0


def test_the_lines_of_a_job_request_name_the_job(
    api: TenantApi, capsys: pytest.CaptureFixture[str]
) -> None:
    with chatq_logging(api.settings, LogFormat.JSON):
        submitted = api.client.post("/v1/jobs", json={"query": "hello"}, headers=api.auth())
        job_id = submitted.get_json()["id"]
        polled = api.client.get(f"/v1/jobs/{job_id}", headers=api.auth())
        other = api.client.get("/v1/tenant", headers=api.auth())
    assert submitted.status_code == 202 and polled.status_code == 200 and other.status_code == 200
    access = [
        line for line in logged_lines(capsys.readouterr().err) if line["event"] == "http_request"
    ]
    assert [line.get("job_id") for line in access] == [job_id, job_id, None]  # never left bound
