"""The deployment files, checked with the tools that run here (Docker and Kubernetes do not):

* deploy/compose/docker-compose.yml validates with `docker-compose config -q` (Debian package docker-compose) and
  wires what the stack needs (health checks, start order, the image's own command, the run launcher's network);
* deploy/compose/.env.template lists every variable the stack and the pipeline read, without values, and the
  DockerRunLauncher forwards exactly those to run containers;
* deploy/compose/dagster.yaml and the instance config deploy/helm/values.yaml produce load with Dagster's own config
  schema (dagster-docker / dagster-k8s installed: the run launchers' and the run coordinator's config included), and
  their run queues limit every API as adpipeline/conventions.py says;
* deploy/helm/values.yaml uses only keys Dagster's chart defines, with the ones it requires, and references
  secrets by name only;
* the Dockerfile is linted structurally: pinned bases, a non-root user, nothing secret copied, the manifest built.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_docker import DockerRunLauncher
from dagster_k8s import K8sRunLauncher

from adpipeline.config import load_config
from adpipeline.conventions import API_TAG, RUNS_AT_ONCE

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "deploy" / "compose"
HELM_VALUES = ROOT / "deploy" / "helm" / "values.yaml"
DAGSTER_MODULE = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]

# What the pipeline reads from the environment besides the per-scope secrets named in adpipeline.yaml
# (ARCHITECTURE.md contracts; README "Live configuration"). ADPIPELINE_CLOCK_URL is for the sandbox and tests only.
PIPELINE_VARIABLES = {"ADPIPELINE_WAREHOUSE_URL", "ADPIPELINE_TOKEN_KEY", "ADPIPELINE_TOKEN_KEYS_OLD",
                      "ADPIPELINE_CONFIG", "META_GRAPH_URL", "BREEZEWAY_API_URL", "GA4_DATA_API_URL"}
# set by docker-compose.yml itself for every Dagster service (not the user's to choose)
COMPOSE_SET = {"DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB"}


def secret_variables() -> set[str]:
    config = load_config()
    names = {config.meta.access_token_env, config.meta.app_id_env, config.meta.app_secret_env,
             config.ga4.credentials_env}
    for region in config.breezeway.regions:
        names |= {region.client_id_var, region.client_secret_var}
    return names


def env_template() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in (COMPOSE / ".env.template").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return {name: value for name, value in pairs}


def compose_config(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["docker-compose", "config"], cwd=directory, capture_output=True, text=True, timeout=120)


# ---- compose

@pytest.fixture
def compose_dir(tmp_path: Path) -> Path:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose; .ci/run installs it)")
    directory = tmp_path / "compose"
    shutil.copytree(COMPOSE, directory)
    return directory


def test_compose_file_validates_and_wires_the_stack(compose_dir):
    # every variable of the template given a (dummy) value, as a filled-in .env
    (compose_dir / ".env").write_text("".join(f"{name}=x\n" for name in env_template()))
    assert subprocess.run(["docker-compose", "config", "-q"], cwd=compose_dir, capture_output=True,
                          text=True).returncode == 0, compose_config(compose_dir).stderr
    stack = yaml.safe_load(compose_config(compose_dir).stdout)
    services = stack["services"]
    assert set(services) == {"postgres", "migrate", "code", "webserver", "daemon"}
    for name in ("postgres", "code", "webserver", "daemon"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    assert services["code"]["healthcheck"]["test"][1:4] == ["dagster", "api", "grpc-health-check"]
    assert services["daemon"]["healthcheck"]["test"][1:] == ["dagster-daemon", "liveness-check"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["code"]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"] == {"code": {"condition": "service_healthy"}}
    # the code server runs exactly what the image runs by default, and runs use its image
    assert services["code"]["command"] == dockerfile_cmd()
    assert services["code"]["environment"]["DAGSTER_CURRENT_IMAGE"] == services["code"]["image"]
    assert {services[name]["image"] for name in ("migrate", "code", "webserver", "daemon")} == {"x"}
    assert re.fullmatch(r"postgres:\d+\.\d+-\w+", services["postgres"]["image"]), "pin Postgres to a minor release"
    # the run containers join the stack's network, under the name the run launcher uses
    launcher = yaml.safe_load((COMPOSE / "dagster.yaml").read_text())["run_launcher"]
    assert stack["networks"]["adpipeline"]["name"] == launcher["config"]["network"]
    for name in ("code", "webserver", "daemon"):
        assert set(services[name]["environment"]) >= COMPOSE_SET | {"DAGSTER_HOME"}
        assert any(v.endswith(":/opt/dagster/dagster_home/dagster.yaml:ro") for v in services[name]["volumes"])
    workspace = yaml.safe_load((COMPOSE / "workspace.yaml").read_text())
    assert workspace["load_from"] == [{"grpc_server": {"host": "code", "port": 4000, "location_name": "adpipeline"}}]


def test_compose_refuses_to_start_without_the_postgres_credentials(compose_dir):
    shutil.copy(compose_dir / ".env.template", compose_dir / ".env")  # every value empty
    result = compose_config(compose_dir)
    assert result.returncode != 0 and "set DAGSTER_PG_USER in .env" in result.stderr


def test_env_template_lists_every_variable_without_values():
    template = env_template()
    assert all(value == "" for value in template.values()), "the template must not hold values"
    assert set(template) >= secret_variables() | PIPELINE_VARIABLES
    assert "ADPIPELINE_CLOCK_URL" not in template  # the sandbox's clock has no place in production
    referenced = set(re.findall(r"\$\{(\w+)", (COMPOSE / "docker-compose.yml").read_text()))
    assert referenced <= set(template), referenced - set(template)
    # run containers get every one of them (DockerRunLauncher refuses a name the daemon does not have)
    launcher = yaml.safe_load((COMPOSE / "dagster.yaml").read_text())["run_launcher"]
    assert set(launcher["config"]["env_vars"]) == (set(template) - {"ADPIPELINE_IMAGE"}) | COMPOSE_SET


def test_compose_instance_config_loads_with_dagsters_schema(monkeypatch):
    config = dagster_instance_config(str(COMPOSE))[0]  # top-level schema + Dagster's own consistency rules
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_docker", "DockerRunLauncher")
    assert_valid(DockerRunLauncher, launcher["config"])
    assert_valid(QueuedRunCoordinator, config["run_coordinator"].get("config") or {})
    assert run_limits(config) == RUNS_AT_ONCE
    assert config["concurrency"]["pools"] == {"default_limit": 1, "granularity": "run"}
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    project = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    for key in ("run_monitoring", "run_retries", "retention"):
        assert config[key] == project[key], f"{key} differs from the project's dagster.yaml"


def assert_valid(configurable: type, config: dict) -> None:
    result = process_config(configurable.config_type(), config)
    assert result.success, [error.message for error in result.errors]


def run_limits(instance_config: dict) -> dict[str, int]:
    limits = instance_config["concurrency"]["runs"]["tag_concurrency_limits"]
    assert all(limit["key"] == API_TAG for limit in limits)
    return {limit["value"]: limit["limit"] for limit in limits}


# ---- helm

# The keys of Dagster's chart (helm/dagster/schema in dagster-io/dagster, the pydantic models its
# values.schema.json is generated from) that these values use: top level, a user deployment, the K8sRunLauncher.
CHART_TOP_LEVEL = {"global", "dagsterWebserver", "dagster-user-deployments", "postgresql",
                   "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret", "rabbitmq", "redis", "flower",
                   "ingress", "imagePullSecrets", "computeLogManager", "scheduler", "runLauncher", "pythonLogs",
                   "dagsterDaemon", "busybox", "migrate", "telemetry", "serviceAccount", "retention",
                   "additionalInstanceConfig"}
USER_DEPLOYMENT_KEYS = {"name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
                        "deploymentNamespace", "port", "replicaCount", "env", "envConfigMaps", "envSecrets",
                        "annotations", "nodeSelector", "affinity", "tolerations", "podSecurityContext",
                        "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe", "labels",
                        "volumeMounts", "volumes", "schedulerName", "initContainers", "sidecarContainers",
                        "deploymentStrategy"}
K8S_LAUNCHER_REQUIRED = {"imagePullPolicy", "loadInclusterConfig", "envConfigMaps", "envSecrets", "envVars",
                         "volumeMounts", "volumes"}
K8S_LAUNCHER_KEYS = K8S_LAUNCHER_REQUIRED | {"image", "jobNamespace", "kubeconfigFile", "labels",
                                             "failPodOnRunFailure", "resources", "schedulerName", "securityContext",
                                             "runK8sConfig"}
RELEASE_NAMESPACE = "adpipeline"


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def render_instance(values: dict[str, Any]) -> dict[str, Any]:
    """The dagster.yaml the chart's templates/configmap-instance.yaml renders from `values`, for the parts these
    values set (a transcription of its helpers/instance/*.tpl; `helm template` is not installed here)."""
    pg = values["postgresql"]
    postgres_db = {"username": pg["postgresqlUsername"], "password": {"env": "DAGSTER_PG_PASSWORD"},
                   "hostname": pg["postgresqlHost"], "db_name": pg["postgresqlDatabase"],
                   "port": pg["service"]["port"], "params": pg.get("postgresqlParams", {})}
    if pg.get("postgresqlScheme"):
        postgres_db["scheme"] = pg["postgresqlScheme"]
    storage = {"postgres_db": postgres_db}
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher_config = {
        "load_incluster_config": launcher["loadInclusterConfig"],
        "job_namespace": launcher.get("jobNamespace") or RELEASE_NAMESPACE,
        "image_pull_policy": launcher["imagePullPolicy"],
        "service_account_name": "dagster",
        "dagster_home": {"env": "DAGSTER_HOME"},
        "instance_config_map": {"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"},
        "postgres_password_secret": {"env": "DAGSTER_K8S_PG_PASSWORD_SECRET"},
        "env_config_maps": [{"env": "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP"},
                            *[c["name"] for c in launcher["envConfigMaps"]]],
    }
    if launcher["envSecrets"]:
        launcher_config["env_secrets"] = [s["name"] for s in launcher["envSecrets"]]
    for key in ("envVars", "volumeMounts", "volumes", "labels", "resources", "securityContext", "runK8sConfig"):
        if launcher.get(key):
            launcher_config[snake(key)] = launcher[key]
    if launcher.get("failPodOnRunFailure"):
        launcher_config["fail_pod_on_run_failure"] = True
    daemon = values["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    retries = daemon["runRetries"]
    retention = values["retention"]
    instance = {
        "scheduler": {"module": "dagster.core.scheduler", "class": "DagsterDaemonScheduler"},
        "schedule_storage": {"module": "dagster_postgres.schedule_storage", "class": "PostgresScheduleStorage",
                             "config": storage},
        "run_storage": {"module": "dagster_postgres.run_storage", "class": "PostgresRunStorage", "config": storage},
        "event_log_storage": {"module": "dagster_postgres.event_log", "class": "PostgresEventLogStorage",
                              "config": storage},
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher_config},
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator",
                            "config": {snake(k): v for k, v in coordinator.items()}},
        "run_monitoring": {snake(k): v for k, v in daemon["runMonitoring"].items()},
        "run_retries": {"enabled": retries["enabled"], "max_retries": retries["maxRetries"],
                        "retry_on_asset_or_op_failure": retries["retryOnAssetOrOpFailure"]},
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
        "retention": {"schedule": {"purge_after_days": retention["schedule"]["purgeAfterDays"]},
                      "sensor": {"purge_after_days": retention["sensor"]["purgeAfterDays"]}},
    }
    return {**instance, **(values.get("additionalInstanceConfig") or {})}


@pytest.fixture
def helm_values() -> dict[str, Any]:
    return yaml.safe_load(HELM_VALUES.read_text())


def test_helm_instance_config_loads_with_dagsters_schema(helm_values, tmp_path, monkeypatch):
    instance = render_instance(helm_values)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance))
    config = dagster_instance_config(str(tmp_path))[0]
    # what the chart's pods set from the release; the launcher's config resolves them
    for name, value in {"DAGSTER_HOME": "/opt/dagster/dagster_home", "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "i",
                        "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql",
                        "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": "e"}.items():
        monkeypatch.setenv(name, value)
    assert_valid(K8sRunLauncher, config["run_launcher"]["config"])
    assert_valid(QueuedRunCoordinator, config["run_coordinator"]["config"])
    assert config["run_launcher"]["config"]["resources"]["limits"]["memory"]
    # the same queue as the compose stack, only wider (a pod per run)
    compose = yaml.safe_load((COMPOSE / "dagster.yaml").read_text())
    assert run_limits(config) == RUNS_AT_ONCE == run_limits(compose)
    assert config["concurrency"]["pools"] == compose["concurrency"]["pools"]
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= sum(RUNS_AT_ONCE.values())
    # the project's run monitoring and retries (a slower start allowed for image pulls)
    project = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    monitoring = {k: v for k, v in config["run_monitoring"].items() if k != "max_resume_run_attempts"}
    assert monitoring == {**project["run_monitoring"], "start_timeout_seconds": 300}
    assert config["run_retries"] == project["run_retries"]
    assert config["retention"] == project["retention"]
    assert config["run_storage"]["config"]["postgres_db"]["scheme"] == "postgresql+psycopg2"


def test_helm_instance_config_with_an_unknown_launcher_key_is_refused(helm_values, monkeypatch):
    """The schema check above can fail: a misspelt run launcher field is rejected."""
    config = render_instance(helm_values)["run_launcher"]["config"]
    monkeypatch.setenv("DAGSTER_HOME", "/h")
    monkeypatch.setenv("DAGSTER_K8S_INSTANCE_CONFIG_MAP", "i")
    monkeypatch.setenv("DAGSTER_K8S_PG_PASSWORD_SECRET", "s")
    monkeypatch.setenv("DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP", "e")
    result = process_config(K8sRunLauncher.config_type(), {**config, "env_secret": ["x"]})
    assert not result.success


def test_helm_values_use_the_charts_keys_and_secrets_by_name(helm_values):
    assert set(helm_values) <= CHART_TOP_LEVEL, set(helm_values) - CHART_TOP_LEVEL
    # external Postgres; its password only as a Secret the chart is told the name of
    assert helm_values["postgresql"]["enabled"] is False and helm_values["postgresql"]["postgresqlHost"]
    assert "postgresqlPassword" not in helm_values["postgresql"]
    assert helm_values["generatePostgresqlPasswordSecret"] is False and helm_values["global"]["postgresqlSecretName"]
    # the user deployment: our image, serving the code location's module over gRPC, secrets by name
    users = helm_values["dagster-user-deployments"]
    assert users["enabled"] is True
    (deployment,) = users["deployments"]
    assert set(deployment) <= USER_DEPLOYMENT_KEYS, set(deployment) - USER_DEPLOYMENT_KEYS
    assert {"name", "image", "port"} <= set(deployment)
    assert deployment["image"]["repository"] and deployment["image"]["tag"] not in ("", "latest")
    assert deployment["codeServerArgs"] == ["-m", DAGSTER_MODULE, "-a", "defs"]
    assert deployment["codeServerArgs"] == dockerfile_cmd()[dockerfile_cmd().index("-m"):][:4]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}  # runs get the deployment's secrets
    secrets = deployment["envSecrets"]
    assert secrets and all(set(s) == {"name"} and s["name"] for s in secrets)
    assert not deployment.get("env"), "plain env values in the chart are not secrets' place"
    assert deployment["podSecurityContext"]["runAsNonRoot"] is True
    assert deployment["podSecurityContext"]["runAsUser"] == int(dockerfile_user())
    # a Job per run
    assert helm_values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = helm_values["runLauncher"]["config"]["k8sRunLauncher"]
    assert K8S_LAUNCHER_REQUIRED <= set(launcher) <= K8S_LAUNCHER_KEYS, set(launcher) ^ K8S_LAUNCHER_KEYS
    daemon = helm_values["dagsterDaemon"]
    assert daemon["runCoordinator"]["enabled"] and daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert daemon["runMonitoring"]["enabled"] is True
    # no literal secret anywhere in the file
    for key, value in walk(helm_values):
        if isinstance(value, str) and re.search(r"password|secret|token|credential", key, re.I) \
                and key != "postgresqlSecretName":
            pytest.fail(f"{key}: {value!r} looks like a secret in values.yaml")


def walk(node: Any, key: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in [(str(k), v), *walk(v, str(k))]]
    if isinstance(node, list):
        return [pair for item in node for pair in walk(item, key)]
    return []


# ---- Dockerfile

def dockerfile_instructions(text: str | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text() if text is None else text)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def dockerfile_cmd() -> list[str]:
    (cmd,) = [args for instruction, args in dockerfile_instructions() if instruction == "CMD"]
    return yaml.safe_load(cmd)


def dockerfile_user() -> str:
    users = [args for instruction, args in dockerfile_instructions() if instruction == "USER"]
    return users[-1].split(":")[0]


def pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    return bool(re.match(r"^\d+\.\d+\.\d+", tag))  # an exact version, not `latest` or a moving `3.11`


def lint_dockerfile(text: str) -> list[str]:
    """Structural problems: unpinned bases, root at run time, secrets in layers, no lock / manifest / gRPC."""
    problems = []
    instructions = dockerfile_instructions(text)
    stages = [args.split()[0] for instruction, args in instructions if instruction == "FROM"]
    if len(stages) < 2:
        problems.append("not multi-stage: build tools would stay in the runtime image")
    copied_images = [m.group(1) for instruction, args in instructions if instruction == "COPY"
                     for m in [re.search(r"--from=(\S+)", args)] if m and ":" in m.group(1)]
    problems += [f"{image} is not pinned to an exact version or digest" for image in stages + copied_images
                 if not pinned(image)]
    last_from = max((i for i, (instruction, _) in enumerate(instructions) if instruction == "FROM"), default=0)
    runtime = instructions[last_from:]
    users = [i for i, (instruction, _) in enumerate(runtime) if instruction == "USER"]
    if not users or runtime[users[-1]][1].split(":")[0] in ("root", "0"):
        problems.append("the runtime stage runs as root")
    elif any(instruction in ("RUN", "COPY", "ADD") for instruction, _ in runtime[users[-1]:]):
        problems.append("build steps after USER (run as the runtime user, or root again)")
    for instruction, args in instructions:
        if instruction in ("COPY", "ADD") and re.search(r"\.env\b|\.key\b|\.pem\b|credentials|secret|token",
                                                         args, re.I):
            problems.append(f"{instruction} {args}: copies a secret into a layer")
        if instruction in ("ENV", "ARG"):
            names = re.findall(r"(\w+)=", args) or [args.split()[0]]
            if [n for n in names if re.search(r"TOKEN|SECRET|PASSWORD|CREDENTIALS|_KEY$", n)]:
                problems.append(f"{instruction} {args}: a secret in the image's metadata")
    runs = " ".join(args for instruction, args in instructions if instruction == "RUN")
    if "uv sync --frozen" not in runs:
        problems.append("the environment is not installed from the lock (uv sync --frozen)")
    if "adpipeline.transform.project" not in runs and "make manifest" not in runs:
        problems.append("the dbt manifest is not built at image build")
    cmds = [yaml.safe_load(args) for instruction, args in instructions if instruction == "CMD"]
    if not cmds or cmds[-1][:3] not in (["dagster", "code-server", "start"], ["dagster", "api", "grpc"]):
        problems.append("the default command does not serve the code location over gRPC")
    return problems


def test_dockerfile_is_pinned_non_root_and_copies_no_secret():
    assert lint_dockerfile((ROOT / "Dockerfile").read_text()) == []
    cmd = dockerfile_cmd()
    assert cmd[cmd.index("-m") + 1] == DAGSTER_MODULE and "--extra deploy" in (ROOT / "Dockerfile").read_text()
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for pattern in ("**/.env", "**/.env.*", ".adpipeline/", ".git/", ".venv/", "dbt_project/target/"):
        assert pattern in ignored, f".dockerignore must exclude {pattern}"
    # every file the build copies from the context exists and is not ignored
    for instruction, args in dockerfile_instructions():
        if instruction == "COPY" and "--from=" not in args:
            *sources, _ = [a for a in args.split() if not a.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
                assert source not in ignored and f"{source}/" not in ignored, f"COPY {source}: ignored"


def test_the_dockerfile_lint_catches_what_it_is_for():
    bad = """FROM python:3.11-slim
ARG META_ACCESS_TOKEN
ENV ADPIPELINE_TOKEN_KEY=abc
COPY .env /app/.env
RUN pip install .
CMD ["adpipeline", "dev"]
"""
    assert lint_dockerfile(bad) == [
        "not multi-stage: build tools would stay in the runtime image",
        "python:3.11-slim is not pinned to an exact version or digest",
        "the runtime stage runs as root",
        "ARG META_ACCESS_TOKEN: a secret in the image's metadata",
        "ENV ADPIPELINE_TOKEN_KEY=abc: a secret in the image's metadata",
        "COPY .env /app/.env: copies a secret into a layer",
        "the environment is not installed from the lock (uv sync --frozen)",
        "the dbt manifest is not built at image build",
        "the default command does not serve the code location over gRPC",
    ]
    assert lint_dockerfile(bad.replace("FROM python:3.11-slim", "FROM python:3.11.14-slim AS b\nFROM python@sha256:"
                                       + "0" * 64) + "USER 0\n")[:2] == ["the runtime stage runs as root",
                                                                        "ARG META_ACCESS_TOKEN: a secret in the "
                                                                        "image's metadata"]


# ---- the run tag the queues limit

def test_every_load_and_dbt_job_carries_the_api_tag_the_queues_limit():
    from adpipeline.definitions import defs

    tags = {job.name: job.tags for job in defs.resolve_all_job_defs()}
    untagged = {"__ASSET_JOB", "meta_token_job", "monitoring_checks_job", "purge_ops_history_job"}
    for name, job_tags in tags.items():
        if name in untagged:
            assert API_TAG not in job_tags, f"{name} must never wait behind loads"
        else:
            assert job_tags.get(API_TAG) in RUNS_AT_ONCE, f"{name} has no {API_TAG} run tag"
    assert {job_tags.get(API_TAG) for job_tags in tags.values()} - {None} == set(RUNS_AT_ONCE)
