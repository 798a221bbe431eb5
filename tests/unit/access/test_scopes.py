"""Scopes: parsing, what admin grants, and that every view of the API says what it needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.api.app import create_app
from shared.api_keys import TENANT_SCOPES, Scope, parse_scopes, scopes_grant
from shared.config import Settings

PUBLIC_ENDPOINTS = {"static"}


def test_scopes_parse_to_their_canonical_order_without_repeats() -> None:
    assert parse_scopes(["admin", " jobs:read", "jobs:read"]) == [Scope.JOBS_READ, Scope.ADMIN]


@pytest.mark.parametrize("bad", [["jobs:delete"], [], ["JOBS:READ"]])
def test_bad_scopes_are_refused_with_the_good_ones(bad: list[str]) -> None:
    with pytest.raises(ValueError, match="scope"):
        parse_scopes(bad)


def test_admin_grants_every_tenant_scope_and_others_only_themselves() -> None:
    for needed in TENANT_SCOPES:
        assert scopes_grant({Scope.ADMIN.value}, needed)
    assert not scopes_grant({Scope.ADMIN.value}, Scope.OPERATOR)
    assert scopes_grant({Scope.OPERATOR.value}, Scope.OPERATOR)
    assert not scopes_grant({Scope.OPERATOR.value}, Scope.JOBS_READ)
    assert scopes_grant({"jobs:read"}, Scope.JOBS_READ)
    assert not scopes_grant({"jobs:read"}, Scope.JOBS_WRITE)
    assert not scopes_grant({"jobs:write", "jobs:read", "knowledge:write"}, Scope.ADMIN)


def test_every_authenticated_view_declares_its_scope(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    undeclared = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if not rule.rule.startswith("/v1/"):
            continue
        if not getattr(view, "scope_declared", False):
            undeclared.append(f"{sorted(rule.methods or ())} {rule.rule}")
    assert undeclared == []
