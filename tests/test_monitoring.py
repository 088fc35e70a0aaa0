"""Operations on a real Dagster instance (dagster-postgres on the embedded server): the watchdog and
`doctor` see a stopped schedule and a stale daemon; check results become alerts and resolve."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.definitions.freshness import CronFreshnessPolicy, TimeWindowFreshnessPolicy
from dagster._daemon.types import DaemonHeartbeat

from adpipeline.monitoring.doctor import collect
from adpipeline.monitoring.freshness import policy_for
from adpipeline.monitoring.health import CRITICAL, OK, WARNING
from adpipeline.monitoring.sensors import check_alert_sensor, watchdog_sensor
from adpipeline.monitoring.health import expected_instigators
from adpipeline.stack import prepare_dagster_home
from adpipeline.warehouse.resource import WarehouseResource

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dagster_env(warehouse_url, tmp_path_factory):
    """A fresh Dagster instance: its own database on the session's Postgres server."""
    name = f"dagster_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    storage = "postgresql+psycopg2://" + warehouse_url.split("://", 1)[1].rsplit("/", 1)[0] + f"/{name}"
    home = tmp_path_factory.mktemp("dagster_home")
    prepare_dagster_home(home)
    saved = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "ADPIPELINE_DAGSTER_PG_URL")}
    os.environ.update({"DAGSTER_HOME": str(home), "ADPIPELINE_DAGSTER_PG_URL": storage})
    yield {"DAGSTER_HOME": str(home), "ADPIPELINE_DAGSTER_PG_URL": storage}
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


@pytest.fixture
def instance(dagster_env):
    with dg.DagsterInstance.get() as inst:
        yield inst


@pytest.fixture(scope="module")
def defs():
    from adpipeline.definitions import defs as loaded

    return loaded


def remote_repository(instance):
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(module_name="adpipeline.definitions", attribute="defs",
                                                    working_directory=str(PROJECT), executable_path=sys.executable),
        location_name="adpipeline",
    )
    location = origin.create_location(instance)
    return location, location.get_repository("__repository__")


def beat_all(instance, age: timedelta = timedelta(0), stale: str | None = None) -> None:
    now = time.time()
    for daemon_type in instance.get_required_daemon_types():
        at = now - (600 if daemon_type == stale else age.total_seconds())
        instance.add_daemon_heartbeat(DaemonHeartbeat(timestamp=at, daemon_type=daemon_type, daemon_id="test", errors=[]))


def test_a_stopped_schedule_is_reported_by_the_watchdog_and_doctor(instance, defs, conn, dagster_env, warehouse_url):
    location, repo = remote_repository(instance)
    schedule = repo.get_schedule("purge_ops_history")
    instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)
    try:
        findings = collect(instance, defs)
        stopped = [f for f in findings if f.kind == "schedule" and f.subject == "purge_ops_history"]
        assert stopped and stopped[0].severity == CRITICAL and "stopped" in stopped[0].message

        sensor = watchdog_sensor(expected_instigators(defs))
        with dg.build_sensor_context(instance=instance, resources={"warehouse": WarehouseResource()}) as context:
            sensor(context)
            tick = sensor(context)  # deduplicated: still one open alert
        # what the UI's tick history of the watchdog shows: the problem itself, not only a count
        assert "schedule 'purge_ops_history' is stopped" in tick.skip_message
        rows = conn.execute("SELECT severity, title FROM ops.alerts WHERE dedupe_key = 'watchdog:schedule:purge_ops_history'"
                            " AND resolved_at IS NULL").fetchall()
        assert rows == [("critical", "schedule 'purge_ops_history' is stopped: nothing it drives will run until it is "
                                     "started again")]

        beat_all(instance)
        env = {**os.environ, **dagster_env, "ADPIPELINE_WAREHOUSE_URL": warehouse_url}
        cli = subprocess.run([sys.executable, "-m", "adpipeline.cli", "doctor"], env=env, capture_output=True, text=True,
                             cwd=PROJECT, timeout=120)
        assert cli.returncode == 2, cli.stdout + cli.stderr
        assert "CRITICAL" in cli.stdout and "purge_ops_history" in cli.stdout
    finally:
        instance.start_schedule(schedule)
        location.cleanup()
    assert not [f for f in collect(instance, defs) if f.subject == "purge_ops_history" and f.severity == CRITICAL]


def test_a_stale_daemon_heartbeat_makes_doctor_critical(instance, defs):
    beat_all(instance)
    assert not [f for f in collect(instance, defs) if f.kind == "daemon" and f.severity == CRITICAL]
    beat_all(instance, stale="SCHEDULER")
    stale = [f for f in collect(instance, defs) if f.kind == "daemon" and f.severity == CRITICAL]
    assert [f.subject for f in stale] == ["SCHEDULER"] and "down or stuck" in stale[0].message


def test_doctor_exits_3_when_the_instance_is_unreachable(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADPIPELINE_", "DAGSTER_"))}
    env["ADPIPELINE_HOME"] = str(tmp_path / "nothing-here")
    cli = subprocess.run([sys.executable, "-m", "adpipeline.cli", "doctor", "--json"], env=env, capture_output=True,
                         text=True, cwd=PROJECT, timeout=120)
    assert cli.returncode == 3 and '"critical": 1' in cli.stdout


@dg.asset(key=["t_mon", "feed"])
def feed() -> None:
    """A stand-in asset."""


@pytest.fixture(params=["postgres", "sqlite"])
def any_instance(request, tmp_path):
    """The project's instance (dagster-postgres) and the one a plain `dagster dev` makes in an empty DAGSTER_HOME
    (SQLite, run-sharded event log: it refuses cross-run event queries by storage id)."""
    if request.param == "postgres":
        yield request.getfixturevalue("instance")
        return
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    with dg.DagsterInstance.local_temp(str(tmp_path)) as inst:
        assert type(inst.event_log_storage) is SqliteEventLogStorage
        yield inst


def test_check_results_raise_and_resolve_alerts(any_instance, conn):
    instance = any_instance
    conn.execute("DELETE FROM ops.alerts WHERE asset_key = 't_mon/feed'")
    conn.commit()
    outcome = {"passed": False}

    @dg.asset_check(asset=feed, name="t_signal")
    def signal() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=outcome["passed"], severity=dg.AssetCheckSeverity.ERROR,
                                   metadata={"summary": "feed is 5 h late"})

    sensor = check_alert_sensor()
    with dg.build_sensor_context(instance=instance, resources={"warehouse": WarehouseResource()}) as context:
        sensor(context)  # catch up with earlier events
        dg.materialize([feed, signal], instance=instance)
        sensor(context)
        assert conn.execute("SELECT severity, message FROM ops.alerts WHERE asset_key = 't_mon/feed'"
                            " AND resolved_at IS NULL").fetchall() == [("critical", "feed is 5 h late")]
        outcome["passed"] = True
        dg.materialize([feed, signal], instance=instance)
        sensor(context)
    rows = conn.execute("SELECT severity, resolved_at IS NOT NULL FROM ops.alerts WHERE asset_key = 't_mon/feed'"
                        " ORDER BY id").fetchall()
    assert rows == [("critical", True), ("info", True)]


def test_every_asset_has_the_freshness_policy_its_cadence_calls_for(defs):
    from adpipeline.config import get_config

    config = get_config()
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable:
            continue
        policy = node.freshness_policy
        assert policy is not None, key
        group = node.group_name
        if group == "meta" and key.to_user_string() != "meta/access_token":
            assert isinstance(policy, CronFreshnessPolicy), key  # quiet hours 22:00-06:00
        else:
            assert isinstance(policy, TimeWindowFreshnessPolicy), key


def test_quiet_hours_policy_never_alarms_at_night():
    spec = dg.AssetSpec(["meta", "ads_insights"], group_name="meta")
    from adpipeline.config import get_config

    policy = policy_for(spec, get_config())
    assert policy.deadline_cron == "0 10,14,18,22 * * *" and policy.timezone == "America/Jamaica"


def test_the_watchdog_alerts_when_the_meta_token_job_stops_and_resolves_when_it_runs(instance, defs, conn, warehouse_url):
    from adpipeline.warehouse.tokens import Token, TokenStore

    conn.execute("DELETE FROM ops.platform_tokens WHERE platform = 'meta' AND scope = 't_watch'")
    conn.execute("DELETE FROM ops.alerts WHERE dedupe_key = 'watchdog:token_job:t_watch'")
    conn.commit()
    store = TokenStore(warehouse_url)
    store.put(Token("meta", "t_watch", access_token="t-watch-token",
                    last_checked_at=datetime.now(timezone.utc) - timedelta(hours=3)))
    sensor = watchdog_sensor(expected_instigators(defs))
    try:
        with dg.build_sensor_context(instance=instance, resources={"warehouse": WarehouseResource()}) as context:
            sensor(context)
        open_alerts = conn.execute("SELECT severity, message FROM ops.alerts WHERE dedupe_key = "
                                   "'watchdog:token_job:t_watch' AND resolved_at IS NULL").fetchall()
        assert len(open_alerts) == 1 and open_alerts[0][0] == "critical" and "has not run for 3.0 h" in open_alerts[0][1]
        store.put(Token("meta", "t_watch", access_token="t-watch-token", last_checked_at=datetime.now(timezone.utc)))
        with dg.build_sensor_context(instance=instance, resources={"warehouse": WarehouseResource()}) as context:
            sensor(context)
        assert conn.execute("SELECT count(*) FROM ops.alerts WHERE dedupe_key = 'watchdog:token_job:t_watch'"
                            " AND resolved_at IS NULL").fetchone()[0] == 0
    finally:
        conn.execute("DELETE FROM ops.platform_tokens WHERE platform = 'meta' AND scope = 't_watch'")
        conn.commit()


def test_a_run_past_its_max_runtime_is_critical(instance, defs):
    from dagster._core.events import DagsterEvent, DagsterEventType
    from dagster._core.test_utils import create_run_for_test

    from adpipeline.monitoring.health import stuck_run_findings

    run = create_run_for_test(instance, job_name="t_stuck_job", status=dg.DagsterRunStatus.NOT_STARTED)
    started = datetime.now(timezone.utc) - timedelta(minutes=90)
    instance.run_storage.handle_run_event(run.run_id, DagsterEvent(DagsterEventType.RUN_START.value,
                                                                   job_name="t_stuck_job"), update_timestamp=started)
    try:
        findings = [f for f in stuck_run_findings(instance, datetime.now(timezone.utc)) if f.subject == run.run_id]
        assert len(findings) == 1 and findings[0].severity == CRITICAL and "running for 90 min (max 60 min)" in findings[0].message
        assert [f for f in collect(instance, defs) if f.kind == "run" and f.subject == run.run_id]
    finally:
        instance.delete_run(run.run_id)


@dg.asset(key=["t_mon", "slow_feed"])
def slow_feed() -> None:
    """A stand-in asset whose check can be held mid-evaluation."""


def _check_record_status(instance, key: dg.AssetCheckKey):
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key]).get(key)
    return record.status.value if record else None


def _materialize_held(instance, check, gate) -> tuple[threading.Thread, dict]:
    """Start a run of slow_feed and its check in a thread; returns once the check's evaluation is planned
    and its step is waiting on `gate`."""
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=dg.materialize([slow_feed, check], instance=instance,
                                                                                   raise_on_error=False)))
    thread.start()
    deadline = time.monotonic() + 60
    while not gate.waiting.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gate.waiting.is_set(), "the check step never started"
    return thread, outcome


def _join(thread: threading.Thread, seconds: float = 300) -> None:
    """Wait for the held run to end (polled: a timed join never times out under libfaketime)."""
    deadline = time.monotonic() + seconds
    while thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)


class Gate:
    def __init__(self) -> None:
        self.waiting, self.release = threading.Event(), threading.Event()

    def wait(self) -> None:
        self.waiting.set()
        assert self.release.wait(300)  # generous: a loaded machine (CI beside other jobs) is slow, not wrong


def test_doctor_reports_a_check_whose_evaluation_is_in_flight(instance):
    """Dagster stores ASSET_CHECK_EVALUATION_PLANNED before the evaluation: doctor reads the latest FINISHED one."""
    gate = Gate()

    @dg.asset_check(asset=slow_feed, name=f"t_held_{uuid.uuid4().hex[:6]}")
    def held() -> dg.AssetCheckResult:
        gate.wait()
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata={"summary": "5 h late"})

    defs = dg.Definitions(assets=[slow_feed], asset_checks=[held])
    key = held.check_key
    subject = key.to_user_string()

    thread, outcome = _materialize_held(instance, held, gate)  # never evaluated before: planned only
    try:
        assert _check_record_status(instance, key) == "PLANNED"
        (finding,) = [f for f in collect(instance, defs) if f.subject == subject]
        assert finding.severity == OK and "not evaluated yet" in finding.message and "in progress" in finding.message
    finally:
        gate.release.set()
        _join(thread)
    assert outcome["result"].success

    gate = Gate()
    thread, outcome = _materialize_held(instance, held, gate)  # a finished evaluation, and a newer one in flight
    try:
        (finding,) = [f for f in collect(instance, defs) if f.subject == subject]
        assert finding.severity == CRITICAL and finding.message.startswith("5 h late") and "in progress" in finding.message
    finally:
        gate.release.set()
        _join(thread)


def test_doctor_reports_a_check_whose_run_ended_before_it_was_evaluated(instance):
    @dg.asset(key=["t_mon", "broken_feed"])
    def broken_feed() -> None:
        raise RuntimeError("extraction failed")

    @dg.asset_check(asset=broken_feed, name=f"t_orphan_{uuid.uuid4().hex[:6]}")
    def orphan() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    result = dg.materialize([broken_feed, orphan], instance=instance, raise_on_error=False)
    assert not result.success
    assert _check_record_status(instance, orphan.check_key) == "PLANNED"  # it stays planned for good
    defs = dg.Definitions(assets=[broken_feed], asset_checks=[orphan])
    (finding,) = [f for f in collect(instance, defs) if f.subject == orphan.check_key.to_user_string()]
    assert finding.severity == WARNING and "not evaluated" in finding.message and result.run_id[:8] in finding.message


def _doctor(monkeypatch, capsys, dagster_env, warehouse_url) -> tuple[int, dict]:
    from adpipeline.cli import cmd_doctor

    for name, value in {**dagster_env, "ADPIPELINE_WAREHOUSE_URL": warehouse_url,
                        "ADPIPELINE_HOME": os.environ["ADPIPELINE_HOME"]}.items():
        monkeypatch.setenv(name, value)  # restored afterwards: the CLI exports its environment
    code = cmd_doctor(argparse.Namespace(json=True))
    return code, json.loads(capsys.readouterr().out)


def test_a_bug_in_doctor_is_reported_as_a_bug_not_as_an_unreachable_instance(monkeypatch, capsys, dagster_env,
                                                                             warehouse_url):
    from adpipeline.monitoring import doctor

    def broken(*args, **kwargs):
        raise AttributeError("'AssetCheckEvaluationPlanned' object has no attribute 'metadata'")

    monkeypatch.setattr(doctor, "collect", broken)
    code, out = _doctor(monkeypatch, capsys, dagster_env, warehouse_url)
    assert code == 5 == doctor.EXIT_INTERNAL
    (finding,) = out["findings"]
    assert finding["kind"] == "doctor" and "AttributeError" in finding["message"] and "bug" in finding["message"]
    assert "cannot read" not in finding["message"]


def test_a_config_error_is_reported_as_a_config_error(tmp_path, dagster_env, warehouse_url):
    broken = tmp_path / "adpipeline.yaml"
    broken.write_text("meta:\n  ad_accounts: 12\n")
    env = {**os.environ, **dagster_env, "ADPIPELINE_WAREHOUSE_URL": warehouse_url, "ADPIPELINE_CONFIG": str(broken)}
    cli = subprocess.run([sys.executable, "-m", "adpipeline.cli", "doctor", "--json"], env=env, capture_output=True,
                         text=True, cwd=PROJECT, timeout=120)
    assert cli.returncode == 4, cli.stdout + cli.stderr
    (finding,) = json.loads(cli.stdout)["findings"]
    assert finding["kind"] == "config" and str(broken) in finding["message"]


@pytest.mark.parametrize("started_minutes_ago, retried", [(57, False), (30, True)])
def test_a_run_failed_at_its_max_runtime_is_not_retried_but_a_crash_earlier_is(instance, started_minutes_ago, retried):
    """Issue 24 finding 5: run monitoring fails a run past its max runtime with no failure reason, and the
    instance's run retries (crashed workers) would rerun it to hang again. The guard sensor marks a run near its
    max runtime first; Dagster's own retry decision (dagster/will_retry, set when the failure is recorded)
    then says no. A younger run that fails (a lost worker) is still retried."""
    from dagster._core.events import DagsterEvent, DagsterEventType
    from dagster._core.test_utils import create_run_for_test

    from adpipeline.monitoring.sensors import max_runtime_guard_sensor

    run = create_run_for_test(instance, job_name="t_hung_job", status=dg.DagsterRunStatus.NOT_STARTED)
    started = datetime.now(timezone.utc) - timedelta(minutes=started_minutes_ago)
    instance.run_storage.handle_run_event(run.run_id, DagsterEvent(DagsterEventType.RUN_START.value,
                                                                   job_name="t_hung_job"), update_timestamp=started)
    try:
        with dg.build_sensor_context(instance=instance) as context:
            max_runtime_guard_sensor()(context)
        instance.report_run_failed(instance.get_run_by_id(run.run_id), "Exceeded maximum runtime of 3600 seconds.")
        assert instance.get_run_by_id(run.run_id).tags.get("dagster/will_retry") == str(retried).lower()
    finally:
        instance.delete_run(run.run_id)
