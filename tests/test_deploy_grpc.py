"""The production shape, locally: the image's code-server command serves the code location over gRPC, a daemon
loads it through a workspace `grpc_server` entry (deploy/compose/workspace.yaml), and a run submitted with the
`dagster` CLI is queued, dequeued by the daemon's QueuedRunCoordinator (deploy/compose/dagster.yaml, its tag
limits included), launched through the code server and materializes an asset — on Postgres instance storage, with a
warehouse that is not the embedded one (so the token key comes from the environment, as in production).

Only the run launcher differs from deploy/compose/dagster.yaml: Docker cannot run here, so runs start as
subprocesses of the code server (the project's LocalRunLauncher: Dagster's default launcher plus worker health
checks) instead of containers of its image.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from adpipeline.conventions import API_TAG, RUNS_AT_ONCE
from adpipeline.monitoring.launcher import HOST_TAG
from adpipeline.sandbox.meta import demo_environment
from adpipeline.sources.meta.auth import ACCESS_TOKEN
from adpipeline.warehouse import db
from adpipeline.warehouse.tokens import Keyring

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "deploy" / "compose"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_command() -> list[str]:
    """The Dockerfile's CMD (what the image runs by default), as a list."""
    (line,) = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")]
    return yaml.safe_load(line.removeprefix("CMD "))


@pytest.fixture
def databases(warehouse_url: str) -> Iterator[tuple[str, dict]]:
    """A warehouse database and an instance database of their own on the session's server (dropped after)."""
    params = conninfo_to_dict(warehouse_url)
    suffix = uuid.uuid4().hex[:8]
    names = (f"grpc_warehouse_{suffix}", f"grpc_dagster_{suffix}")
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f"CREATE DATABASE {name}")
    warehouse = make_conninfo(warehouse_url, dbname=names[0])
    db.migrate(warehouse)
    yield warehouse, {**params, "dbname": names[1]}
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def stop_schedules_and_sensors(workspace: Path) -> None:
    """Turn off the project's default-on schedules and sensors (the daemon would otherwise start check runs and
    tick sensors beside the run under test), read from the code server through the workspace's grpc entry."""
    with dg.DagsterInstance.get() as instance, \
            WorkspaceProcessContext(instance, WorkspaceFileTarget([str(workspace)])) as context:
        location = context.create_request_context().get_code_location("adpipeline")
        for repository in location.get_repositories().values():
            for schedule in repository.get_schedules():
                instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)
            for sensor in repository.get_sensors():
                instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)


def test_code_server_daemon_and_cli_materialize_an_asset_on_postgres(databases, sandbox, tmp_path, monkeypatch):
    warehouse, instance_db = databases
    token_key = secrets.token_bytes(32)
    port = free_port()

    # DAGSTER_HOME = the compose stack's instance config, Postgres storage through its DAGSTER_PG_* variables
    instance_config = yaml.safe_load((COMPOSE / "dagster.yaml").read_text())
    assert instance_config.pop("run_launcher")["class"] == "DockerRunLauncher"
    # the single-host launcher of the project's instance (Default + worker health checks) stands in for Docker
    instance_config["run_launcher"] = yaml.safe_load((ROOT / "dagster.yaml").read_text())["run_launcher"]
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config))
    workspace = yaml.safe_load((COMPOSE / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    entry["grpc_server"].update(host="127.0.0.1", port=port)
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "ADPIPELINE_", "META_"))}
    env.update(demo_environment(sandbox.base_url))  # the sandbox's Meta API and its demo app credentials
    env.update({
        "PATH": f"{BIN}:/usr/bin:/bin",
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": instance_db["host"], "DAGSTER_PG_PORT": str(instance_db["port"]),
        "DAGSTER_PG_USER": instance_db["user"], "DAGSTER_PG_PASSWORD": instance_db["password"],
        "DAGSTER_PG_DB": instance_db["dbname"],
        "ADPIPELINE_WAREHOUSE_URL": warehouse,
        "ADPIPELINE_TOKEN_KEY": base64.urlsafe_b64encode(token_key).decode(),
        "ADPIPELINE_HOME": str(tmp_path / "adpipeline_home"),
        "ADPIPELINE_CLOCK_URL": sandbox.admin.clock_url,
    })
    for name in ("DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD",
                 "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, env[name])

    code_cmd = image_command()
    code_cmd[code_cmd.index("-h") + 1] = "127.0.0.1"
    code_cmd[code_cmd.index("-p") + 1] = str(port)
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("code", "daemon")}
    procs: list[subprocess.Popen] = []

    def start(name: str, cmd: list[str], environment: dict[str, str] = env) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, env=environment, cwd=tmp_path, stdout=logs[name], stderr=subprocess.STDOUT,
                                start_new_session=True)
        procs.append(proc)
        return proc

    def log(name: str) -> str:
        logs[name].flush()
        return f"--- {name}:\n" + (tmp_path / f"{name}.log").read_text()[-4000:]

    started = time.monotonic()
    try:
        code = start("code", code_cmd)
        # the compose health check of the `code` service, until it passes
        health = [str(BIN / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(port)]
        deadline = time.monotonic() + 240
        while subprocess.run(health, env=env, capture_output=True).returncode != 0:
            assert code.poll() is None and time.monotonic() < deadline, log("code")
            time.sleep(2)

        print(f"code server healthy after {time.monotonic() - started:.0f} s")
        stop_schedules_and_sensors(tmp_path / "workspace.yaml")
        # The daemon on the host's real clock: under libfaketime (the suite's `faketime -f +100d` run) its threads'
        # timed waits never return and it never dequeues. Nothing here depends on the date: the pipeline's clock is
        # the sandbox's (ADPIPELINE_CLOCK_URL), the code server and the run stay under the shifted clock.
        real_clock = {k: v for k, v in env.items() if k != "LD_PRELOAD" and not k.startswith("FAKETIME")}
        daemon = start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(tmp_path / "workspace.yaml")],
                       real_clock)
        run_id = str(uuid.uuid4())
        # the token job runs its steps in the run worker's process (its executor, adpipeline/conventions.py)
        launch = subprocess.run([str(BIN / "dagster"), "job", "launch", "-w", str(tmp_path / "workspace.yaml"),
                                 "-j", "meta_token_job", "--run-id", run_id],
                                env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=300)
        assert launch.returncode == 0, launch.stdout + launch.stderr
        print(f"run submitted after {time.monotonic() - started:.0f} s")

        with dg.DagsterInstance.get() as instance:
            deadline = time.monotonic() + 300
            while (run := instance.get_run_by_id(run_id)) is None or not run.is_finished:
                assert daemon.poll() is None and code.poll() is None, log("daemon") + log("code")
                assert time.monotonic() < deadline, f"run {run and run.status}\n" + log("daemon") + log("code")
                time.sleep(2)
            print(f"run {run.status.value} after {time.monotonic() - started:.0f} s")
            events = [e.dagster_event_type for e in instance.all_logs(run_id)]
            assert run.status == dg.DagsterRunStatus.SUCCESS, log("daemon") + log("code")
            # it went through the queue the daemon drains, with the production tag limits in force
            lifecycle = [e for e in events if e in (dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING,
                                                    dg.DagsterEventType.RUN_SUCCESS)]
            assert lifecycle == [dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING,
                                 dg.DagsterEventType.RUN_SUCCESS], events
            limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
            assert {limit["value"]: limit["limit"] for limit in limits if limit["key"] == API_TAG} == RUNS_AT_ONCE
            # loaded from the gRPC server, not from a Python module in this process
            origin = run.remote_job_origin.repository_origin.code_location_origin
            assert isinstance(origin, GrpcServerCodeLocationOrigin) and origin.port == port
            assert origin.location_name == "adpipeline"
            assert run.tags.get("dagster/priority") == "10"
            # launched by LocalRunLauncher to a local code server: tagged with this host for its health checks
            assert run.tags.get(HOST_TAG) == socket.gethostname()
            materialization = instance.get_latest_materialization_event(ACCESS_TOKEN)
            assert materialization is not None and materialization.run_id == run_id
        # the asset wrote through the warehouse resource: the token row, encrypted with the environment's key
        with psycopg.connect(warehouse) as conn:
            stored = conn.execute("SELECT key_id, access_token_enc FROM ops.platform_tokens "
                                  "WHERE platform = 'meta'").fetchall()
        assert len(stored) == 1 and stored[0][0] == Keyring(token_key).current_id
        assert demo_environment("")["META_ACCESS_TOKEN"].encode() not in bytes(stored[0][1])
        assert not list((tmp_path / "adpipeline_home").rglob("token.key")), "a key file instead of the environment's key"
        for name in ("code", "daemon"):
            assert demo_environment("")["META_APP_SECRET"] not in log(name), f"a secret in the {name} log"
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
        for handle in logs.values():
            handle.close()
