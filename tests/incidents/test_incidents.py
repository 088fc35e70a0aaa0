"""The seed runbooks' incidents, replayed: each is reproduced on the sandbox (its clock, its faults) and a real
Dagster instance (dagster-postgres), then evaluated the way production evaluates it -- the product's own checks
through `adpipeline check`'s runner, the `check_alerts` and `watchdog` sensors, `doctor` -- and each asserts the
signal, its severity, and that it fires exactly once (evaluated twice, one open alert).

The ten: token < 14 days, token expired, refresh failing while valid, token job not run > 2 h, a schedule stopped,
the daemon dead, a sync stuck running > 1 h, a feed stale > 2 h then > 4 h, past reservations not updating, a
missing day for one ad account.
"""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta, timezone

import dagster as dg
import pytest
import requests
from runbook_sql import statements
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.test_utils import create_run_for_test
from dagster._daemon.monitoring.run_monitoring import check_run_timeout
from test_checks_job import ADS_INSIGHTS, HIERARCHY
from test_meta_assets import DENVER, meta  # noqa: F401 - the fixture
from test_meta_tokens import Tokens, tokens  # noqa: F401 - the fixture
from test_monitoring import beat_all, dagster_env, defs, remote_repository  # noqa: F401 - fixtures

from adpipeline.config import get_config
from adpipeline.monitoring.cadence import lateness as cadence_lateness
from adpipeline.monitoring.doctor import collect, diagnose
from adpipeline.monitoring.health import CRITICAL, expected_instigators
from adpipeline.monitoring.runner import CheckOutcome, execute
from adpipeline.monitoring.sensors import check_alert_sensor, watchdog_sensor
from adpipeline.monitoring.thresholds import HOURLY_FEED_LATENESS
from adpipeline.sandbox.breezeway import demo_environment
from adpipeline.sources.breezeway.assets import PROPERTIES_KEY, RESERVATIONS_KEY, build_assets
from adpipeline.sources.breezeway.resources import BreezewayResource
from adpipeline.warehouse import sync_log
from adpipeline.warehouse.resource import WarehouseResource

TOKEN = dg.AssetKey(["meta", "access_token"])


class Replay:
    """Evaluates a check as `adpipeline check` does (one run on the instance), then lets check_alerts see it."""

    def __init__(self, instance: dg.DagsterInstance, defs: dg.Definitions, conn, context) -> None:
        self.instance, self.defs, self.conn, self.context = instance, defs, conn, context
        self.sensor = check_alert_sensor()
        self.sensor(context)  # past evaluations of this instance are not this incident's

    def twice(self, key: dg.AssetCheckKey) -> CheckOutcome:
        outcomes = []
        for _ in range(2):  # the 15-minute job runs again: the alert must not repeat
            _, (outcome,) = execute(self.defs, [key], self.instance)
            outcomes.append(outcome)
            self.sensor(self.context)
        assert outcomes[0].status == outcomes[1].status
        return outcomes[-1]

    def open_alerts(self, key: dg.AssetCheckKey) -> list[tuple[str, str]]:
        return self.conn.execute("SELECT severity, message FROM ops.alerts WHERE dedupe_key = %s"
                                 " AND resolved_at IS NULL", (f"check:{key.to_user_string()}",)).fetchall()


@pytest.fixture
def replay(dagster_env, defs, conn, sandbox):  # noqa: F811
    conn.execute("DELETE FROM ops.alerts")
    conn.commit()
    with dg.DagsterInstance.get() as instance, dg.build_sensor_context(
            instance=instance, resources={"warehouse": WarehouseResource()}) as context:
        yield Replay(instance, defs, conn, context)
    conn.rollback()
    conn.execute("DELETE FROM ops.alerts")  # the session's warehouse: later test files start without this incident's
    conn.commit()


def check(asset: dg.AssetKey, name: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(asset, name)


# -- Meta token (lengolf guide) ----------------------------------------------------------------------------------

def test_token_with_less_than_14_days_left_warns_once(replay, tokens, monkeypatch):  # noqa: F811
    monkeypatch.delenv("META_APP_SECRET")  # nothing can exchange it: the token ages as in the incident
    tokens.days_left(10)
    tokens.run()  # the token job inspects it
    key = check(TOKEN, "token_lifetime")
    outcome = replay.twice(key)
    assert outcome.status == "WARN" and "expires in 10.0 days" in outcome.description
    assert replay.open_alerts(key) == [("warning", outcome.description)]


def test_an_expired_token_is_critical_once_and_names_the_manual_re_authentication(replay, tokens, monkeypatch):  # noqa: F811
    monkeypatch.delenv("META_APP_SECRET")
    tokens.days_left(-1)
    tokens.run()
    key = check(TOKEN, "token_lifetime")
    outcome = replay.twice(key)
    assert outcome.status == "ERROR" and "manual re-authentication required" in outcome.description
    assert replay.open_alerts(key) == [("critical", outcome.description)]
    # the recovery steps reach whoever looks at the failed extraction
    failure = next(e for e in tokens.extract().all_events if e.event_type_value == "STEP_FAILURE")
    assert "adpipeline tokens exchange meta -" in failure.step_failure_data.error.message


def test_a_failing_refresh_while_valid_warns_once_and_syncs_go_on(replay, tokens):  # noqa: F811
    tokens.sandbox.admin.add_faults({"path": "/meta/*/oauth/access_token", "status": 503, "count": None})
    tokens.days_left(10)
    tokens.run()
    key = check(TOKEN, "token_refresh_attempt")
    outcome = replay.twice(key)
    assert outcome.status == "WARN" and "refresh attempt failed" in outcome.description
    assert replay.open_alerts(key) == [("warning", outcome.description)]
    assert tokens.extract().success  # extraction keeps using the still-valid token


def test_the_token_job_not_running_for_over_2_hours_is_critical_once(replay, tokens):  # noqa: F811
    tokens.run()
    key = check(TOKEN, "token_job_ran")
    assert replay.twice(key).status == "PASS"
    tokens.sandbox.admin.advance(2.5 * 3600)  # nothing runs the token job meanwhile
    outcome = replay.twice(key)
    assert outcome.status == "ERROR" and "has not run for 2.5 h" in outcome.description
    assert replay.open_alerts(key) == [("critical", outcome.description)]


# -- schedules and the daemon (lengolf incident: workflows disabled, nobody noticed) --------------------------------

def test_a_stopped_schedule_is_one_critical_alert(replay, defs):  # noqa: F811
    instance = replay.instance
    location, repo = remote_repository(instance)
    schedule = repo.get_schedule("meta_insights_hourly")
    instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)
    try:
        sensor = watchdog_sensor(expected_instigators(defs))
        sensor(replay.context)
        sensor(replay.context)
        rows = replay.conn.execute("SELECT severity, message FROM ops.alerts WHERE dedupe_key ="
                                   " 'watchdog:schedule:meta_insights_hourly' AND resolved_at IS NULL").fetchall()
        assert len(rows) == 1 and rows[0][0] == "critical" and "stopped" in rows[0][1]
    finally:
        instance.start_schedule(schedule)
        location.cleanup()


def test_a_dead_daemon_makes_doctor_exit_non_zero_with_one_critical_finding(replay, defs, capsys):  # noqa: F811
    beat_all(replay.instance)
    assert not [f for f in collect(replay.instance, defs) if f.kind == "daemon" and f.severity == CRITICAL]
    beat_all(replay.instance, stale="SCHEDULER")  # its heartbeat stopped 10 minutes ago
    dead = [f for f in collect(replay.instance, defs) if f.kind == "daemon" and f.severity == CRITICAL]
    assert [f.subject for f in dead] == ["SCHEDULER"]
    capsys.readouterr()
    assert diagnose(lambda: defs) == 2
    assert "SCHEDULER" in capsys.readouterr().out
    beat_all(replay.instance)  # leave a live daemon for the next test


# -- a feed goes quiet (ADinsights, Breezeway runbook: stale > 2 h Warning, > 4 h Critical) -------------------------

def moment_late_by(last_success, band: tuple[timedelta, timedelta]):
    """The first moment (in 10-minute steps) when a feed last loaded at `last_success` is late by a value in band."""
    config = get_config()
    for minutes in range(10, 30 * 60, 10):
        moment = last_success + timedelta(minutes=minutes)
        late = cadence_lateness(last_success, moment, config.cadences.meta_hourly, config.reporting_timezone)
        if band[0] < late <= band[1]:
            return moment
    raise AssertionError(f"no moment late by {band}")


def test_a_failing_feed_warns_after_2_hours_then_is_critical_after_4_once_each(replay, meta):  # noqa: F811
    today = meta.sandbox.admin.now().astimezone(timezone(timedelta(hours=-5))).date().isoformat()  # Jamaica
    assert meta.run(*HIERARCHY, ADS_INSIGHTS, days=(today, today), checks=False).success
    (last_success,) = meta.rows("SELECT max(finished_at) FROM ops.etl_sync_log WHERE source = 'meta'"
                                " AND entity = 'ads_insights' AND status = 'success'")[0]
    meta.sandbox.admin.add_faults([{"path": "/meta/*", "status": 503, "count": None}])  # the API stops answering
    key = check(ADS_INSIGHTS, "lateness")

    warn, error = HOURLY_FEED_LATENESS.warn, HOURLY_FEED_LATENESS.error
    meta.sandbox.admin.set_clock(moment_late_by(last_success, (warn, error)))
    outcome = replay.twice(key)
    assert outcome.status == "WARN"
    assert replay.open_alerts(key) == [("warning", outcome.description)]

    meta.sandbox.admin.set_clock(moment_late_by(last_success, (error, error + timedelta(hours=2))))
    outcome = replay.twice(key)
    assert outcome.status == "ERROR"
    assert replay.open_alerts(key) == [("critical", outcome.description)]  # the warning was superseded, not doubled


# -- a sync stuck in "running" (Breezeway runbook: > 1 h -> failed + alert) --------------------------------------

def stuck_rows(conn) -> list[tuple]:
    """The Breezeway runbook's own symptom query, read from the runbook (it runs on migration 0007's views)."""
    (query,) = [s.sql for s in statements() if "sync_status = 'running'" in s.sql and "1 hour" in s.sql]
    return conn.execute(query).fetchall()


def test_a_run_stuck_over_1_hour_is_one_critical_alert_then_failed_and_its_sync_row_too(replay, conn, warehouse_url):
    instance = replay.instance
    # a Breezeway run whose worker hangs: started 90 minutes ago (Dagster stamps runs with the host clock)
    run = create_run_for_test(instance, job_name="breezeway_reservations_job", status=dg.DagsterRunStatus.NOT_STARTED)
    started = datetime.now(timezone.utc) - timedelta(minutes=90)
    instance.run_storage.handle_run_event(run.run_id, DagsterEvent(DagsterEventType.RUN_START.value,
                                                                   job_name=run.job_name), update_timestamp=started)
    # ...and the sync-log row its killed process left 'running' (nobody holds its lock any more)
    region = get_config().breezeway.regions[0].code
    conn.execute("DELETE FROM ops.etl_sync_log WHERE source = 'breezeway'")
    conn.execute("INSERT INTO ops.etl_sync_log (source, scope, entity, sync_type, status, started_at, dagster_run_id)"
                 " VALUES ('breezeway', %s, 'reservations', 'incremental', 'running', now() - interval '90 minutes', %s)",
                 (region, run.run_id))
    conn.commit()
    assert len(stuck_rows(conn)) == 1
    try:
        watchdog = watchdog_sensor(expected_instigators(replay.defs))
        watchdog(replay.context)
        watchdog(replay.context)
        rows = conn.execute("SELECT severity, message FROM ops.alerts WHERE dedupe_key = %s AND resolved_at IS NULL",
                            (f"watchdog:run:{run.run_id}",)).fetchall()
        assert len(rows) == 1 and rows[0][0] == "critical" and "(max 60 min)" in rows[0][1]

        # the daemon's run monitoring, with this instance's settings (dagster.yaml: max_runtime_seconds 3600)
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_runtime_seconds == 3600
        check_run_timeout(instance, instance.get_run_record_by_id(run.run_id), logging.getLogger("test"),
                          instance.run_monitoring_max_runtime_seconds)
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE

        # the next attempt of that sync fails the abandoned row before it starts its own
        with sync_log.sync(source="breezeway", scope=region, entity="reservations", sync_type="incremental",
                           url=warehouse_url):
            pass
        (status, error), = conn.execute("SELECT status, error FROM ops.etl_sync_log WHERE dagster_run_id = %s",
                                        (run.run_id,)).fetchall()
        assert status == "failed" and error.startswith("abandoned")
        assert stuck_rows(conn) == []
    finally:
        instance.delete_run(run.run_id)
        conn.execute("DELETE FROM ops.etl_sync_log WHERE source = 'breezeway'")
        conn.commit()


# -- past reservations stop updating (Breezeway incident) --------------------------------------------------------

def test_a_past_stay_changed_upstream_is_updated_by_the_next_incremental_run(sandbox, conn, warehouse_url,
                                                                            monkeypatch):
    config = get_config()
    region = config.breezeway.regions[0]
    conn.execute("DELETE FROM ops.etl_sync_log WHERE source = 'breezeway'")
    conn.execute("DELETE FROM ops.platform_tokens WHERE platform = 'breezeway'")
    conn.execute("TRUNCATE raw_breezeway.properties, raw_breezeway.reservations")
    conn.commit()
    for name, value in demo_environment(sandbox.base_url, config.breezeway.regions).items():
        monkeypatch.setenv(name, value)
    job = dg.Definitions(
        assets=build_assets(config), resources={"breezeway": BreezewayResource(),
                                                "warehouse": WarehouseResource(url=warehouse_url)},
        jobs=[dg.define_asset_job("load", selection=dg.AssetSelection.assets(PROPERTIES_KEY, RESERVATIONS_KEY))],
    ).resolve_job_def("load")

    def load(mode: str) -> dg.ExecuteInProcessResult:
        result = job.execute_in_process(partition_key=region.code, raise_on_error=False,
                                        run_config={"ops": {"breezeway__reservations": {"config": {"mode": mode}}}})
        assert result.success
        return result

    load("full")
    admin = f"{sandbox.base_url}/_admin/breezeway"
    checkout = (sandbox.admin.now() - timedelta(days=30)).date()
    stay = requests.get(f"{admin}/reservations", params={"company_id": region.company_id, "checkout_date": checkout},
                        timeout=30).json()[0]
    landed = "SELECT checkout_time FROM breezeway.reservations WHERE region_code = %s AND id = %s"
    assert conn.execute(landed, (region.code, stay["id"])).fetchone()[0] != time(13, 0)
    sandbox.admin.advance(3600)  # an hour later upstream: a late checkout is recorded on a stay a month old
    assert requests.post(f"{admin}/reservations/{stay['id']}", json={"set": {"checkout_time": "13:00:00"}},
                         timeout=30).ok
    result = load("auto")  # the next hourly run
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == RESERVATIONS_KEY)
    assert event.materialization.metadata["sync_type"].value == "incremental"
    assert conn.execute(landed, (region.code, stay["id"])).fetchone()[0] == time(13, 0)


# -- one ad account misses a day (ADinsights) --------------------------------------------------------------------

def test_a_missing_day_for_one_account_is_one_critical_alert_and_a_backfill_restores_it(replay, meta):  # noqa: F811
    meta.sandbox.admin.set_clock("2026-11-23T15:00:00Z")
    assert meta.run(*HIERARCHY, checks=False).success
    assert meta.run(ADS_INSIGHTS, days=("2026-11-20", "2026-11-20"), checks=False).success
    meta.script(forbidden_accounts=[DENVER])  # one account's access breaks for a day
    # the others load; the step fails naming Denver's day (partial data is never a green run)
    assert not meta.run(ADS_INSIGHTS, days=("2026-11-21", "2026-11-21"), checks=False).success
    assert meta.rows("SELECT count(DISTINCT account_id) FROM raw_meta.ads_insights WHERE date = '2026-11-21'")[0][0] == 2
    meta.script(forbidden_accounts=[])
    assert meta.run(ADS_INSIGHTS, days=("2026-11-22", "2026-11-22"), checks=False).success

    key = check(ADS_INSIGHTS, "completeness")
    outcome = replay.twice(key)
    assert outcome.status == "ERROR" and f"{DENVER} 2026-11-21" in outcome.description
    assert replay.open_alerts(key) == [("critical", outcome.description)]
    before = meta.rows("SELECT count(*) FROM raw_meta.ads_insights WHERE account_id = %s AND date = '2026-11-21'",
                       DENVER)[0][0]
    assert before == 0

    assert meta.run(ADS_INSIGHTS, days=("2026-11-21", "2026-11-21"), checks=False).success  # the backfill
    assert meta.rows("SELECT count(*) FROM raw_meta.ads_insights WHERE account_id = %s AND date = '2026-11-21'",
                     DENVER)[0][0] > 0
    assert replay.twice(key).status == "PASS"
    assert replay.open_alerts(key) == []  # resolved
