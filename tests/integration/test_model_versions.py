"""Model versions in the database (embedded SQLite, and Postgres): registering checks the folder,
the last activated is the one served, and the operator API needs the operator scope."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from chatq.cli import main as chatq_main
from services.api.app import create_app
from services.worker.model_switch import wanted_model
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.model_layout import ModelLayout
from shared.model_versions import (
    ModelVersionError,
    activate_model_version,
    list_model_versions,
    register_model_version,
)

pytestmark = pytest.mark.integration


def test_registering_checks_the_name_and_the_folder(
    backend_settings: Settings, tiny_model_dir: Path, tmp_path: Path
) -> None:
    url = backend_settings.database_url
    with pytest.raises(ModelVersionError, match="bad version name"):
        register_model_version(url, "../evil", tiny_model_dir)
    with pytest.raises(ModelVersionError, match="chatq model build"):
        register_model_version(url, "empty", tmp_path)
    version = register_model_version(url, "v1", tiny_model_dir)
    assert version.card["manifest"]["name"] == ModelLayout(tiny_model_dir).require_manifest().name
    with pytest.raises(ModelVersionError, match="exists already"):
        register_model_version(url, "v1", tiny_model_dir)


def test_the_last_activated_version_is_served_and_deactivating_goes_back_to_the_default(
    backend_settings: Settings, tiny_model_dir: Path, tmp_path: Path
) -> None:
    settings = backend_settings.model_copy(update={"model_dir": tiny_model_dir})
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    url = settings.database_url
    register_model_version(url, "v1", tiny_model_dir)
    register_model_version(url, "v2", copy)
    default = wanted_model(settings)
    assert (default.version, default.model_dir) == (None, tiny_model_dir)
    activate_model_version(url, "v2")
    activate_model_version(url, "v1")
    assert [v.name for v in list_model_versions(url) if v.active] == ["v1"]
    assert wanted_model(settings).version == "v1"

    client = create_app(settings).test_client()
    operator = create_api_key(url, "ops", scopes=["operator"])
    admin = create_api_key(url, "shop")
    as_operator = {"Authorization": f"Bearer {operator.key}"}
    assert client.get("/v1/operator/models", headers=as_operator).status_code == 200
    listed = client.get("/v1/operator/models", headers=as_operator).get_json()
    assert [(v["name"], v["active"]) for v in listed["data"]] == [("v1", True), ("v2", False)]
    refused = client.get("/v1/operator/models", headers={"Authorization": f"Bearer {admin.key}"})
    assert refused.status_code == 403
    assert refused.get_json()["required_scope"] == "operator"
    missing = client.post("/v1/operator/models/v9/activate", headers=as_operator)
    assert missing.status_code == 404
    shutil.rmtree(copy)  # the folder went away: activating it is refused, v1 stays
    gone = client.post("/v1/operator/models/v2/activate", headers=as_operator)
    assert gone.status_code == 409, gone.get_data(as_text=True)
    assert wanted_model(settings).version == "v1"
    after = client.post("/v1/operator/models/deactivate", headers=as_operator).get_json()
    assert not any(v["active"] for v in after["data"])
    assert wanted_model(settings).version is None


def test_the_models_command_registers_activates_and_lists(
    command_env: Settings, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert chatq_main(["models", "register", "v1", str(tiny_model_dir), "--activate"]) == 0
    assert chatq_main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "activated v1" in out and "* v1" in out
    assert chatq_main(["models", "activate", "nope"]) == 1
    assert "no model version 'nope'" in capsys.readouterr().err
