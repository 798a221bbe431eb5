"""The README, CI script and Compose file say what the code does."""

from __future__ import annotations

from pathlib import Path

import yaml

from chatq.cli import build_parser
from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"CHATQ_{name.upper()}" not in readme]
    assert missing == []


def test_the_readme_commands_and_ci_agree() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert "\ndemo:" in makefile and "\ntest:" in makefile


def test_compose_runs_every_service_on_the_servers() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yml").read_text())
    services = compose["services"]
    assert {"rabbitmq", "postgres", "migrate", "api", "worker", "postprocess"} <= set(services)
    parser = build_parser()
    for name in ("migrate", "api", "worker", "worker-gpu", "postprocess"):
        service = services[name]
        env = service["environment"]
        assert env["CHATQ_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:" in env["CHATQ_DATABASE_URL"]
        assert env["CHATQ_BROKER_URL"].startswith("amqp://")
        assert "@rabbitmq:" in env["CHATQ_BROKER_URL"]
        command = service["command"]
        assert command[0] == "chatq"
        parser.parse_args(command[1:])  # a real subcommand
    gpu = services["worker-gpu"]
    assert gpu["environment"]["CHATQ_DEVICE"] == "cuda"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "ports" not in services["worker"] and "ports" not in services["postprocess"]
