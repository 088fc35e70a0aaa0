"""`adpipeline check`: the selected asset checks run once on the configured warehouse and Dagster instance (a real
dagster-postgres instance on the session's server), without materializing; exit codes, JUnit XML, and the
evaluations recorded in the instance (so the UI and the check_alerts sensor see them)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from test_monitoring import dagster_env  # noqa: F401 - the fixture: a fresh instance of its own

from adpipeline.cli import main
from adpipeline.monitoring.sensors import check_alert_sensor
from adpipeline.sources.meta.resources import MetaResource
from adpipeline.warehouse.resource import WarehouseResource

PROJECT = Path(__file__).resolve().parent.parent
TOKEN = "meta/access_token"
TOKEN_CHECKS = ["token_data_access", "token_job_ran", "token_lifetime", "token_refresh_attempt", "token_scopes"]


@pytest.fixture
def env(dagster_env, warehouse_url, sandbox, monkeypatch):  # noqa: F811
    """The CLI's environment (restored afterwards: the CLI exports its own); the sandbox's clock is the pipeline's."""
    for name, value in {**dagster_env, "ADPIPELINE_WAREHOUSE_URL": warehouse_url}.items():
        monkeypatch.setenv(name, value)
    with env_conn() as conn:  # an open alert left by an earlier test would absorb this test's (one per key)
        conn.execute("DELETE FROM ops.alerts WHERE dedupe_key LIKE %s", (f"check:{TOKEN}:%",))
    yield sandbox


@pytest.fixture
def meta_token(conn):
    """Writes the Meta token's state (no secret: the checks read only its metadata); removed afterwards."""
    def store(now, *, days_left: float):
        conn.execute(
            "INSERT INTO ops.platform_tokens (platform, scope, api, expires_at, data_access_expires_at, scopes, status,"
            " last_checked_at, last_refresh_succeeded) VALUES ('meta', 'default', %s, %s, %s, %s, 'valid', %s, true)"
            " ON CONFLICT (platform, scope, api) DO UPDATE SET expires_at = EXCLUDED.expires_at,"
            " data_access_expires_at = EXCLUDED.data_access_expires_at, scopes = EXCLUDED.scopes,"
            " status = EXCLUDED.status, last_checked_at = EXCLUDED.last_checked_at,"
            " last_refresh_succeeded = EXCLUDED.last_refresh_succeeded",
            (MetaResource().api(),  # the API in use: the token checks judge its token
             now + timedelta(days=days_left), now + timedelta(days=80), ["ads_read", "business_management"],
             now - timedelta(minutes=10)))
        conn.commit()

    yield store
    conn.execute("DELETE FROM ops.platform_tokens WHERE platform = 'meta' AND scope = 'default'")
    conn.commit()


def check(capsys, *args: str) -> tuple[int, dict]:
    code = main(["check", "--select", TOKEN, "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def statuses(out: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in out["checks"]}


def junit(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()  # well-formed, or this raises
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert int(suite.get("tests")) == len(suite.findall("testcase"))
    assert int(suite.get("failures")) == len(suite.findall("testcase/failure"))
    assert int(suite.get("errors")) == len(suite.findall("testcase/error"))
    return suite


def test_pass_warn_and_error_exit_codes_junit_and_recorded_evaluations(env, meta_token, capsys, tmp_path):
    now = env.admin.now()
    meta_token(now, days_left=30)
    code, out = check(capsys)
    assert code == 0 and sorted(statuses(out)) == TOKEN_CHECKS and set(statuses(out).values()) == {"PASS"}

    # The evaluations are in the instance, in the run the command reported, and nothing was materialized.
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(out["run_id"])
        assert run is not None and run.is_success
        lifetime = dg.AssetCheckKey(dg.AssetKey(["meta", "access_token"]), "token_lifetime")
        (record,) = instance.event_log_storage.get_asset_check_execution_history(lifetime, limit=1)
        assert record.run_id == out["run_id"] and record.status.value == "SUCCEEDED"
        assert not instance.get_records_for_run(out["run_id"], of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records

    # 10 days left: WARN. It fails only under --fail-on warn, in the exit code and in the JUnit report alike.
    meta_token(now, days_left=10)
    code, out = check(capsys, "--junit-xml", str(tmp_path / "default.xml"))
    assert code == 0 and statuses(out)["token_lifetime"] == "WARN"
    suite = junit(tmp_path / "default.xml")
    assert suite.get("failures") == "0" and "WARN" in suite.find("testcase[@name='token_lifetime']/system-out").text
    code, out = check(capsys, "--fail-on", "warn", "--junit-xml", str(tmp_path / "warn.xml"))
    assert code == 1 == out["exit_code"]
    suite = junit(tmp_path / "warn.xml")
    (failure,) = suite.findall("testcase/failure")
    assert failure.get("type") == "WARN" and "expires in 10.0 days" in failure.get("message")
    assert [c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None] == ["token_lifetime"]
    assert {c.get("classname") for c in suite.findall("testcase")} == {TOKEN}

    # 3 days left: ERROR, whatever --fail-on says; the table names it.
    meta_token(now, days_left=3)
    assert main(["check", "--select", f"{TOKEN}:token_lifetime", "--junit-xml", str(tmp_path / "error.xml")]) == 2
    table = capsys.readouterr().out
    assert f"{TOKEN}:token_lifetime" in table and "ERROR" in table and "expires in 3.0 days" in table
    assert junit(tmp_path / "error.xml").find("testcase/failure").get("type") == "ERROR"

    # The recorded evaluations feed the alerts like a scheduled run's: the ERROR became a critical alert.
    with dg.DagsterInstance.get() as instance, dg.build_sensor_context(
            instance=instance, resources={"warehouse": WarehouseResource()}) as context:
        check_alert_sensor()(context)
    with env_conn() as conn:
        rows = conn.execute("SELECT severity, message FROM ops.alerts WHERE dedupe_key = %s AND resolved_at IS NULL",
                            (f"check:{TOKEN}:token_lifetime",)).fetchall()
        assert rows == [("critical", "meta token (default): token expires in 3.0 days")]
        conn.execute("DELETE FROM ops.alerts WHERE dedupe_key LIKE %s", (f"check:{TOKEN}:%",))


def env_conn():
    import psycopg

    return psycopg.connect(os.environ["ADPIPELINE_WAREHOUSE_URL"], autocommit=True)


def test_select_by_group_source_and_name_and_a_typo_is_a_config_error(env, capsys):
    from adpipeline.definitions import defs
    from adpipeline.monitoring.runner import SelectionError, runnable_checks, select

    checks = runnable_checks(defs)
    lateness = select(checks, ["lateness"])
    assert lateness and all(k.name == "lateness" for k in lateness)
    assert {k.asset_key.path[0] for k in select(checks, ["ga4"])} == {"ga4"}
    both = select(checks, ["meta/ads_insights:lateness,breezeway/tags"])
    assert [k.to_user_string() for k in both] == ["breezeway/tags:all_scopes_loaded", "breezeway/tags:lateness",
                                                 "breezeway/tags:row_count_guard", "meta/ads_insights:lateness"]
    assert len(select(checks, [])) == len(checks)
    with pytest.raises(SelectionError):
        select(checks, ["meta/ads_insight"])
    assert main(["check", "--select", "meta/ads_insight"]) == 4
    assert "matches no asset check" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_exit_3_when_the_warehouse_or_the_instance_cannot_be_reached(env, dagster_env, capsys, monkeypatch):  # noqa: F811
    # The command as CI runs it (its own process): the warehouse is down.
    dead = f"postgresql://adpipeline:not-a-secret@127.0.0.1:{free_port()}/warehouse"
    cli = subprocess.run([sys.executable, "-m", "adpipeline.cli", "check", "--json"], capture_output=True, text=True,
                         env={**os.environ, "ADPIPELINE_WAREHOUSE_URL": dead}, cwd=PROJECT, timeout=120)
    assert cli.returncode == 3, cli.stdout + cli.stderr
    out = json.loads(cli.stdout)
    assert "cannot reach the warehouse" in out["error"] and "not-a-secret" not in cli.stdout + cli.stderr

    # The warehouse answers but the instance's storage does not.
    monkeypatch.setenv("ADPIPELINE_DAGSTER_PG_URL", "postgresql+psycopg2://u:p@127.0.0.1:%d/dagster" % free_port())
    assert main(["check", "--select", TOKEN, "--json"]) == 3
    assert "cannot reach the Dagster instance" in json.loads(capsys.readouterr().out)["error"]


def test_the_installed_command_runs_the_checks_in_its_own_process(env, meta_token, tmp_path):
    meta_token(env.admin.now(), days_left=3)
    report = tmp_path / "checks.xml"
    cli = subprocess.run([sys.executable, "-m", "adpipeline.cli", "check", "--select", TOKEN, "--junit-xml",
                          str(report)], capture_output=True, text=True, env=dict(os.environ), cwd=PROJECT, timeout=300)
    assert cli.returncode == 2, cli.stdout + cli.stderr
    suite = junit(report)
    assert [c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None] == ["token_lifetime"]
    assert "recorded in the Dagster instance as run" in cli.stdout


def test_the_ci_workflow_runs_the_command_on_a_schedule_with_arguments_it_accepts():
    import shlex

    import yaml

    from adpipeline.cli import build_parser

    workflow = yaml.safe_load((PROJECT / ".github/workflows/asset-checks.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["schedule"][0]["cron"] and "workflow_dispatch" in triggers
    (step,) = [s for s in workflow["jobs"]["asset-checks"]["steps"] if "adpipeline check" in s.get("run", "")]
    assert "${{" not in step["run"]  # inputs arrive through the environment
    line = next(ln for ln in step["run"].splitlines() if "adpipeline check" in ln)
    argv = shlex.split(line.replace('"${args[@]}"', "--fail-on error --junit-xml reports/asset-checks.xml"))
    args = build_parser().parse_args(argv[argv.index("adpipeline") + 1:])
    assert args.func.__name__ == "cmd_check" and args.junit_xml == Path("reports/asset-checks.xml")
    assert {"ADPIPELINE_WAREHOUSE_URL", "ADPIPELINE_DAGSTER_PG_URL", "DAGSTER_HOME"} <= set(
        workflow["jobs"]["asset-checks"]["env"])
