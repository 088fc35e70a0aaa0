"""What every fault scenario shares: the real Definitions' scheduled jobs run on a Dagster instance on Postgres
storage against the sandbox and the embedded warehouse, and the five verdicts of issue 22 —
  (a) warehouse rows == the sandbox's truth for every scope and day touched   `assert_meta_truth`
  (b) 0 duplicate natural keys                                                `assert_no_duplicate_keys`
  (c) the sync log tells the story, nothing left `running`                    `sync_story`
  (d) one clear, classified message and the right check/alert                 `FaultPipeline.notify`, `open_alerts`
  (e) the canary secret appears nowhere                                       `assert_canary_nowhere`
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import requests
from test_ga4_assets import normalised
from test_ga4_assets import stored as ga4_stored
from test_ga4_assets import truth as ga4_truth
from test_meta_assets import ACCOUNTS, Meta, expected_rows, table_rows

from adpipeline.config import get_config
from adpipeline.monitoring.sensors import check_alert_sensor, run_failure_alert_sensor, run_recovery_alert_sensor
from adpipeline.sandbox.process import SandboxProcess
from adpipeline.sources.breezeway.tables import reservation_row
from adpipeline.sources.ga4.reports import REPORTS as GA4_REPORTS
from adpipeline.sources.meta import tables as meta_tables
from adpipeline.warehouse.resource import WarehouseResource

PROJECT = Path(__file__).resolve().parents[2]
# The Meta token of every scenario: issued by the sandbox for the suite, so any copy of it found anywhere is a leak.
CANARY = "EAAFaultSuiteCanary0x5eC12e7"


class FaultPipeline:
    """The product as an operator runs it: the schedule decides the run, the job of the Definitions executes it
    on the instance, the sensors tell people. Meta's truth and rows through the Meta helper of the slice tests."""

    def __init__(self, sandbox: SandboxProcess, warehouse_url: str, instance: dg.DagsterInstance,
                 defs: dg.Definitions) -> None:
        self.sandbox, self.url, self.instance, self.defs = sandbox, warehouse_url, instance, defs
        self.meta = Meta(sandbox, warehouse_url)
        self.resources = {"warehouse": WarehouseResource(url=warehouse_url)}
        self.failure_sensor, self.recovery_sensor = run_failure_alert_sensor(), run_recovery_alert_sensor()
        self.check_sensor = check_alert_sensor()
        self.messages: list[str] = []  # every sentence the user was shown (step failures, check descriptions)

    # -- running -------------------------------------------------------------------------------------------

    def run_requests(self, schedule_name: str) -> tuple[str, list[dg.RunRequest]]:
        """What the schedule asks for at the sandbox's now (its real tick function): one run per region or
        (day, property) for Breezeway and GA4."""
        schedule = self.defs.get_schedule_def(schedule_name)
        with dg.build_schedule_context(instance=self.instance, scheduled_execution_time=self.sandbox.admin.now(),
                                       repository_def=self.defs.get_repository_def()) as context:
            return schedule.job_name, list(schedule.evaluate_tick(context).run_requests)

    def run_request(self, schedule_name: str) -> tuple[str, dg.RunRequest]:
        job_name, (request,) = self.run_requests(schedule_name)
        return job_name, request

    def scheduled_each(self, schedule_name: str, **options: Any) -> dict[str, dg.ExecuteInProcessResult]:
        """Every run one tick of the schedule asks for, in its order (as the daemon launches them, one after
        the other here); partition key -> result, the sensors told after each."""
        job_name, requests_ = self.run_requests(schedule_name)
        return {request.partition_key: self.run_job(job_name, tags=request.tags, partition_key=request.partition_key,
                                                     **options) for request in requests_}

    def scheduled(self, schedule_name: str, **options: Any) -> dg.ExecuteInProcessResult:
        """One run of the schedule's job as the schedule requested it now; the sensors see how it ended."""
        job_name, request = self.run_request(schedule_name)
        return self.run_job(job_name, tags=request.tags, partition_key=request.partition_key, **options)

    def run_job(self, job_name: str, *, tags: dict[str, str] | None = None, partition_key: str | None = None,
                run_config: dict | None = None) -> dg.ExecuteInProcessResult:
        result = self.execute(job_name, tags=tags, partition_key=partition_key, run_config=run_config)
        self.notify(result)
        return result

    def execute(self, job_name: str, *, tags: dict[str, str] | None = None, partition_key: str | None = None,
                run_config: dict | None = None) -> dg.ExecuteInProcessResult:
        """The run alone (no sensors): what runs at the same time as another uses this, then `notify`."""
        return self.defs.resolve_job_def(job_name).execute_in_process(
            instance=self.instance, tags=tags, partition_key=partition_key, run_config=run_config,
            raise_on_error=False)

    def notify(self, result: dg.ExecuteInProcessResult) -> None:
        """The run-status sensors and check_alerts evaluate the finished run, as the daemon would next tick."""
        self.notify_run(result.run_id)
        self.messages += [e.step_failure_data.error.message for e in result.get_step_failure_events()]
        self.messages += [e.description or "" for e in result.get_asset_check_evaluations() if not e.passed]

    def notify_run(self, run_id: str) -> None:
        """The sensors see how a run ended (in process or not: one failed by run monitoring, say)."""
        run = self.instance.get_run_by_id(run_id)
        failed = run.status == dg.DagsterRunStatus.FAILURE
        ended = dg.DagsterEventType.RUN_FAILURE if failed else dg.DagsterEventType.RUN_SUCCESS
        event = self.instance.all_logs(run.run_id, of_type=ended)[0].dagster_event
        sensor = self.failure_sensor if failed else self.recovery_sensor
        context = dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_event=event, dagster_run=run,
                                                     dagster_instance=self.instance, resources=self.resources)
        sensor(context.for_run_failure() if failed else context)
        with dg.build_sensor_context(instance=self.instance, resources=self.resources) as context:
            self.check_sensor(context)

    # -- verdicts --------------------------------------------------------------------------------------------

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        return self.meta.rows(sql, *params)

    def open_alerts(self) -> dict[str, tuple[str, str]]:
        """dedupe key -> (severity, message) of every open alert."""
        return {k: (s, m) for k, s, m in self.rows(
            "SELECT dedupe_key, severity, message FROM ops.alerts WHERE resolved_at IS NULL")}


def failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.step_failure_data.error.message for e in result.get_step_failure_events()]


def scope_metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey, name: str, empty: Any) -> Any:
    """A runner metadata entry (failed_scopes, errors) of a materialization or, once a failed scope fails the
    step, of its failure."""
    for event in result.get_asset_materialization_events():
        if event.asset_key == key:
            return event.materialization.metadata[name].value
    for event in result.get_step_failure_events():
        data = event.step_failure_data.user_failure_data
        if data is not None and name in data.metadata:
            return data.metadata[name].value
    return empty


def failed_scopes(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> list[str]:
    return list(scope_metadata(result, key, "failed_scopes", []))


def assert_meta_truth(pipeline: FaultPipeline, since: str, until: str) -> int:
    """(a) ad-level insights of every account for since..until equal the sandbox's truth now; returns the count."""
    stored, truth = table_rows(pipeline.meta, since, until), expected_rows(pipeline.meta, since, until)
    missing, extra = set(truth) - set(stored), set(stored) - set(truth)
    wrong = [k for k in set(truth) & set(stored) if truth[k] != stored[k]]
    assert not (missing or extra or wrong), (f"{len(missing)} missing, {len(extra)} extra, {len(wrong)} differ, e.g."
                                             f" {[(k, stored.get(k), truth.get(k)) for k in [*missing, *extra, *wrong][:2]]}")
    assert {a for a, _, _ in stored} == set(ACCOUNTS)
    return len(stored)


# Breezeway reservations: the columns a pull decides (typed as the loader types them); the access-code hash, payload
# and load time are the loader's own
RESERVATION_FIELDS = ("property_id", "status", "checkin_date", "checkin_time", "checkout_date", "checkout_time",
                      "nights", "guest_count", "type_guest", "type_stay", "created_at", "updated_at")


def assert_breezeway_truth(pipeline: FaultPipeline, regions: list[str] | None = None) -> int:
    """(a) every reservation the Breezeway sandbox serves each region now, and no other, is stored with the values
    the API shows (typed by the product's own row mapping); returns the count compared."""
    compared = 0
    for region in get_config().breezeway.regions:
        if regions is not None and region.code not in regions:
            continue
        served = requests.get(f"{pipeline.sandbox.base_url}/_admin/breezeway/reservations",
                              params={"company_id": region.company_id}, timeout=60).json()
        truth = {}
        for raw in served:
            row = reservation_row(region, raw, lambda text: None)
            truth[row["id"]] = tuple(row[f] for f in RESERVATION_FIELDS)
        stored = {i: tuple(rest) for i, *rest in pipeline.rows(
            f"SELECT id, {', '.join(RESERVATION_FIELDS)} FROM raw_breezeway.reservations"
            " WHERE region_code = %s AND deleted_at IS NULL", region.code)}
        missing, extra = set(truth) - set(stored), set(stored) - set(truth)
        wrong = [i for i in set(truth) & set(stored) if truth[i] != stored[i]]
        assert truth and not (missing or extra or wrong), (
            f"{region.code}: {len(truth)} served, {len(missing)} missing, {len(extra)} extra, {len(wrong)} differ,"
            f" e.g. {[(i, stored.get(i), truth.get(i)) for i in [*missing, *extra, *wrong][:2]]}")
        compared += len(truth)
    return compared


def assert_ga4_truth(pipeline: FaultPipeline, partitions: list[str]) -> int:
    """(a) every GA4 report's rows of each (day, property) partition equal the sandbox's truth now; returns the
    count compared."""
    compared = 0
    with psycopg.connect(pipeline.url) as conn:
        for key in partitions:
            day, pid = key.split("|")
            for report in GA4_REPORTS:
                truth = normalised(ga4_truth(pipeline.sandbox, report, pid, day))
                stored = normalised(ga4_stored(conn, report, pid, day))
                assert truth == stored, (f"{report.name} {pid} {day}: {len(stored)} stored, {len(truth)} in truth,"
                                         f" e.g. {[r for r in truth if r not in stored][:1]}")
                compared += len(truth)
    return compared


def assert_no_duplicate_keys(url: str, tables: list[Any] = list(meta_tables.ALL)) -> None:
    """(b) no natural key twice in any landing table (the primary keys say so; this says it did not drift)."""
    with psycopg.connect(url) as conn:
        for table in tables:
            key = ", ".join(table.key)
            (dupes,) = conn.execute(f"SELECT count(*) FROM (SELECT {key} FROM {table.qualified} GROUP BY {key}"
                                    " HAVING count(*) > 1) d").fetchone()
            assert dupes == 0, f"{table.qualified}: {dupes} duplicated natural keys"


def sync_story(url: str, source: str, entity: str, run_id: str) -> Counter[str]:
    """(c) the sync-log rows one run wrote: status -> count. No row of the source may be left `running`.
    Today a scope that failed is `failed` and the others `success` (issue 16 item 8 adds `partial` at the run
    level: adapt here)."""
    with psycopg.connect(url) as conn:
        running = conn.execute("SELECT count(*) FROM ops.etl_sync_log WHERE source = %s AND status = 'running'",
                               (source,)).fetchone()[0]
        rows = conn.execute("SELECT status, count(*) FROM ops.etl_sync_log WHERE source = %s AND entity = %s"
                            " AND dagster_run_id = %s GROUP BY 1", (source, entity, run_id)).fetchall()
    assert running == 0, f"{running} {source} sync-log row(s) left running"
    return Counter(dict(rows))


def sync_errors(url: str, source: str, run_id: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [e for (e,) in conn.execute("SELECT error FROM ops.etl_sync_log WHERE source = %s AND"
                                           " dagster_run_id = %s AND status = 'failed' ORDER BY id",
                                           (source, run_id)).fetchall()]


def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The `adpipeline` command in a child process, as an operator types it."""
    return subprocess.run([sys.executable, "-m", "adpipeline.cli", *args], capture_output=True, text=True,
                          cwd=PROJECT, env=env, input=stdin, timeout=120)


def _tables_containing(conn: psycopg.Connection, schemas: tuple[str, ...], secret: str) -> list[str]:
    found = []
    tables = conn.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema ="
                          " ANY(%s) AND table_type = 'BASE TABLE'", (list(schemas),)).fetchall()
    for schema, name in tables:
        hit = conn.execute(f'SELECT 1 FROM "{schema}"."{name}" t WHERE strpos(t::text, %s) > 0 LIMIT 1',
                           (secret,)).fetchone()
        if hit:
            found.append(f"{schema}.{name}")
    return found


def assert_canary_nowhere(secrets: list[str], *, warehouse_url: str, instance_url: str, dagster_home: Path,
                          server_log: Path | None, outputs: list[str] = ()) -> None:
    """(e) none of `secrets` in: the instance database (event log, runs, ticks...), DAGSTER_HOME (compute logs),
    the warehouse's ops.* tables (alerts, alert bodies, sync log, tokens), CLI output, the Postgres server log."""
    leaks = []
    instance_dsn = "postgresql://" + instance_url.split("://", 1)[1]
    for secret in secrets:
        with psycopg.connect(instance_dsn) as conn:
            leaks += [f"instance {t}" for t in _tables_containing(conn, ("public",), secret)]
        with psycopg.connect(warehouse_url) as conn:
            leaks += [f"warehouse {t}" for t in _tables_containing(conn, ("ops",), secret)]
        for path in dagster_home.rglob("*"):
            if path.is_file() and secret.encode() in path.read_bytes():
                leaks.append(str(path))
        if server_log is not None and server_log.exists() and secret in server_log.read_text(errors="replace"):
            leaks.append(str(server_log))
        leaks += [f"output {i}" for i, text in enumerate(outputs) if secret in text]
    assert not leaks, f"a secret leaked into: {leaks}"


def issue_meta_token(sandbox: SandboxProcess, token: str, *, status: str = "valid", days: int = 50) -> None:
    """The sandbox accepts `token` (a long-lived user token, or a revoked one with status `invalidated`)."""
    body = {"access_token": token, "expires_at": (sandbox.admin.now() + timedelta(days=days)).isoformat(),
            "status": status, **({"subcode": 460} if status != "valid" else {})}
    assert requests.post(f"{sandbox.base_url}/_admin/meta/tokens", json=body, timeout=10).ok


def meta_insights_route(sandbox: SandboxProcess) -> int:
    return sandbox.admin.count("GET /meta/{version}/act_{account_id}/{edge:str}")  # in an insights run: insights
