"""GA4 assets and checks, materialized from the real definitions on the sandbox subprocess and Postgres:
rows equal the emulation's truth (typed, with currency, across many pages), a restated day converges,
(other) rows are kept and flagged, a forbidden property fails alone, invalid_grant fails loudly without
leaking secrets, and each check trips at its threshold."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import dagster as dg
import psycopg
import pytest
import requests
from psycopg.rows import dict_row

from adpipeline.cli import token_rows
from adpipeline.config import get_config, parse_config
from adpipeline.sandbox.ga4 import demo_environment
from adpipeline.sandbox.process import SandboxProcess
from adpipeline.sources.ga4.assets import restatement_partition_keys
from adpipeline.sources.ga4.definitions import build_defs
from adpipeline.sources.ga4.reports import LANDING_PAGE_EVENTS, REPORT_METADATA, REPORTS, TRAFFIC_ACQUISITION, Report
from adpipeline.sources.ga4.resources import Ga4Resource
from adpipeline.warehouse.resource import WarehouseResource

RESORTS, LODGES, PARTNER = "310000001", "310000002", "310000003"
LANDING_KEY = dg.AssetKey(["ga4", "landing_page_events"])
TRAFFIC_KEY = dg.AssetKey(["ga4", "traffic_acquisition"])


@pytest.fixture
def ga4_env(sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = demo_environment(sandbox.base_url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def clean(warehouse_url: str) -> None:
    """GA4's rows out of the session warehouse (sync log, tables, tokens), so each test starts empty."""
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("DELETE FROM ops.etl_sync_log WHERE source = 'ga4'")
        conn.execute("DELETE FROM ops.platform_tokens WHERE platform = 'ga4'")
        for table in [*(r.table for r in REPORTS), REPORT_METADATA]:
            conn.execute(f"DELETE FROM {table.qualified}")


def run(defs: dg.Definitions, pid: str, day: str, *, keys=(LANDING_KEY,), checks: bool = False,
        page_size: int | None = None) -> dg.ExecuteInProcessResult:
    resources = {"warehouse": WarehouseResource(), **defs.resources}
    if page_size:
        resources["ga4"] = Ga4Resource(credentials=dg.EnvVar("GA4_CREDENTIALS"), page_size=page_size)
    selection = dg.AssetSelection.assets(*keys)
    if checks:
        selection = selection | dg.AssetSelection.checks_for_assets(*keys)
    return dg.materialize([*defs.assets, *defs.asset_checks], resources=resources, selection=selection,
                          partition_key=dg.MultiPartitionKey({"date": day, "property": pid}), raise_on_error=False)


def metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey = LANDING_KEY) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    [event] = result.get_step_failure_events()
    return event.step_failure_data.error.message


def checks_of(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {f"{e.asset_key.path[-1]}.{e.check_name}": e for e in result.get_asset_check_evaluations()}


def truth(sandbox: SandboxProcess, report: Report, pid: str, day: str) -> list[dict]:
    """What the emulation holds for the report, as table rows (typed like the warehouse returns them)."""
    body = report.request(date.fromisoformat(day), page_size=1)
    response = requests.post(f"{sandbox.base_url}/_admin/ga4/properties/{pid}:runReport", json=body, timeout=30)
    response.raise_for_status()
    rows = []
    for raw in response.json().get("rows", []):
        dims = [v["value"] for v in raw["dimensionValues"]]
        values = [v["value"] for v in raw["metricValues"]]
        row = {"date_raw": dims[0], **{d.column: v for d, v in zip(report.dimensions, dims[1:])}}
        row.update({m.column: (int(v) if m.type == "TYPE_INTEGER" else Decimal(v)) for m, v in zip(report.metrics, values)})
        rows.append(row)
    return rows


def stored(conn: psycopg.Connection, report: Report, pid: str, day: str, columns: list[str] | None = None) -> list[dict]:
    columns = columns or ["date_raw", *(d.column for d in report.dimensions), *(m.column for m in report.metrics)]
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT {', '.join(columns)} FROM {report.table.qualified}"
                           " WHERE property_id = %s AND report_date = %s", (pid, day)).fetchall()
    conn.commit()
    return rows


def normalised(rows: list[dict]) -> list[dict]:
    """Comparable rows: numeric(18,6) comes back with six decimals, so compare values, not scales."""
    def value(v):
        return (v.normalize() if v else Decimal(0)) if isinstance(v, Decimal) else v
    return sorted(({k: value(v) for k, v in row.items()} for row in rows), key=lambda r: json.dumps(r, default=str))


def test_a_many_page_report_lands_exactly_as_the_emulation_holds_it(sandbox, ga4_env, clean, conn) -> None:
    day = "2026-11-20"
    result = run(build_defs(get_config()), RESORTS, day, page_size=7)
    assert result.success
    expected = truth(sandbox, LANDING_PAGE_EVENTS, RESORTS, day)
    assert normalised(stored(conn, LANDING_PAGE_EVENTS, RESORTS, day)) == normalised(expected)

    pages = math.ceil(len(expected) / 7)
    meta = metadata(result)
    assert meta["rows_inserted"] == meta["report_rows"] == len(expected) > 300
    assert meta["api_calls"] == pages == sandbox.admin.count("POST /ga4/v1beta/properties/{property_id}:runReport")
    assert meta["currency"] == "USD" and meta["time_zone"] == "America/Jamaica" and meta["failed_scopes"] == []

    [row] = stored(conn, LANDING_PAGE_EVENTS, RESORTS, day, ["date", "date_raw", "is_other", "currency", "sessions",
                                                              "purchase_revenue", "payload"])[:1]
    assert row["date"] == date(2026, 11, 20) and row["date_raw"] == "20261120" and row["is_other"] is False
    assert row["currency"] == "USD" and isinstance(row["sessions"], int) and isinstance(row["purchase_revenue"], Decimal)
    assert set(row["payload"]) == {"dimensions", "metrics"}
    purchases = [r for r in expected if r["event_name"] == "purchase"]
    assert purchases and all(r["purchase_revenue"] > 0 for r in purchases)

    log = conn.execute("SELECT status, scope, window_start, window_end, api_calls, records_inserted"
                       " FROM ops.etl_sync_log WHERE source = 'ga4' AND entity = 'landing_page_events'").fetchall()
    assert log == [("success", RESORTS, date(2026, 11, 20), date(2026, 11, 20), pages, len(expected))]


def test_a_restated_day_converges_to_the_latest_numbers(sandbox, ga4_env, clean, conn) -> None:
    day = "2026-11-21"  # two days before the sandbox clock: still changing
    defs = build_defs(get_config())
    assert run(defs, RESORTS, day).success
    first = stored(conn, LANDING_PAGE_EVENTS, RESORTS, day)
    assert normalised(first) == normalised(truth(sandbox, LANDING_PAGE_EVENTS, RESORTS, day))

    sandbox.admin.advance(30 * 3600)  # late hits arrive, spam is filtered out
    later = truth(sandbox, LANDING_PAGE_EVENTS, RESORTS, day)
    assert normalised(later) != normalised(first)
    result = run(defs, RESORTS, day)
    assert result.success
    assert normalised(stored(conn, LANDING_PAGE_EVENTS, RESORTS, day)) == normalised(later)
    meta = metadata(result)
    vanished = {(r["landing_page"], r["event_name"]) for r in first} - {(r["landing_page"], r["event_name"]) for r in later}
    assert vanished and meta["rows_deleted"] == len(vanished) and meta["rows_updated"] > 0

    again = metadata(run(defs, RESORTS, day))  # nothing changed upstream: nothing rewritten
    assert (again["rows_inserted"], again["rows_updated"], again["rows_deleted"]) == (0, 0, 0)


def test_other_rows_are_kept_and_flagged_and_warned_about(sandbox, ga4_env, clean, conn) -> None:
    day = "2026-11-20"
    result = run(build_defs(get_config()), LODGES, day, keys=(LANDING_KEY, TRAFFIC_KEY), checks=True)
    assert result.success
    with conn.cursor(row_factory=dict_row) as cur:
        other = cur.execute("SELECT * FROM raw_ga4.landing_page_events WHERE property_id = %s AND is_other",
                            (LODGES,)).fetchall()
    assert len(other) == 1
    assert other[0]["date"] is None and other[0]["date_raw"] == "(other)" and other[0]["report_date"] == date(2026, 11, 20)
    assert other[0]["landing_page"] == other[0]["event_name"] == "(other)" and other[0]["sessions"] > 0
    assert metadata(result)["data_loss_from_other_row"] is True and metadata(result)["other_rows"] == 1
    assert conn.execute("SELECT count(*) FROM raw_ga4.traffic_acquisition WHERE is_other").fetchone()[0] == 0

    checks = checks_of(result)
    loss = checks["landing_page_events.other_row_data_loss"]
    assert not loss.passed and loss.severity == dg.AssetCheckSeverity.WARN
    assert LODGES in loss.description and "(other)" in loss.description
    assert checks["traffic_acquisition.other_row_data_loss"].passed


def test_a_forbidden_property_fails_alone_and_the_all_scopes_check_says_so(sandbox, ga4_env, clean, conn) -> None:
    config = parse_config("""
ga4:
  properties:
    - {id: "310000001", name: Resorts, timezone: America/Jamaica, currency: USD}
    - {id: "310000003", name: Partner, timezone: Europe/London, currency: GBP}
""")
    defs = build_defs(config)
    day = "2026-11-20"
    instance = dg.DagsterInstance.ephemeral()
    both = dg.materialize(  # one run over the day for both properties (a range of partitions)
        list(defs.assets), resources={"warehouse": WarehouseResource(), **defs.resources}, selection=[LANDING_KEY],
        tags={"dagster/asset_partition_range_start": f"{day}|{RESORTS}",
              "dagster/asset_partition_range_end": f"{day}|{PARTNER}"}, raise_on_error=False, instance=instance)
    assert not both.success  # partial data is not a success...
    [failure] = both.get_step_failure_events()
    message = failure.step_failure_data.error.message
    assert "ga4/landing_page_events: 1 of 2 scope(s) failed (1 committed and recorded)" in message
    assert "properties/310000003" in message and "permission denied" in message and "not retried" in message
    assert "Action: " in message and "rerun the failed (day, property) partitions" in message
    listed = {k: v.value for k, v in failure.step_failure_data.user_failure_data.metadata.items()}
    assert listed["failed_scopes"] == [f"{PARTNER} {day}"] and listed["scopes_loaded"] == 1
    loaded = conn.execute("SELECT count(*) FROM raw_ga4.landing_page_events WHERE property_id = %s", (RESORTS,))
    assert loaded.fetchone()[0] > 0  # ...but the healthy property's data is in, and recorded as materialized
    records = instance.get_records_for_run(both.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    assert [r.event_log_entry.asset_materialization.partition for r in records] == [f"{day}|{RESORTS}"]

    healthy = run(defs, RESORTS, day, checks=True)
    assert healthy.success and metadata(healthy)["report_rows"] > 0
    everything = checks_of(healthy)["landing_page_events.all_scopes_loaded"]
    assert not everything.passed and everything.severity == dg.AssetCheckSeverity.ERROR
    assert PARTNER in everything.description and RESORTS not in everything.description.split(":", 1)[1]
    status = dict(conn.execute("SELECT scope, status FROM ops.etl_sync_log WHERE source = 'ga4'").fetchall())
    assert status == {PARTNER: "failed", RESORTS: "success"}


def test_invalid_grant_fails_the_run_saying_reauthorize_without_leaking_the_key(sandbox, ga4_env, clean) -> None:
    requests.post(f"{sandbox.base_url}/_admin/ga4/revoke", json={"principal": "service_account"}, timeout=10)
    defs = build_defs(get_config())
    result = run(defs, RESORTS, "2026-11-20", keys=(LANDING_KEY, TRAFFIC_KEY), checks=True)
    assert not result.success
    failures = [e.step_failure_data.error.message for e in result.get_step_failure_events()]
    assert failures and all("Re-authorize" in m and "GA4_CREDENTIALS" in m and "not retried" in m for m in failures)
    assert sandbox.admin.count("POST /ga4/token") == 1  # the second asset in the run did not try again
    assert sandbox.admin.count("POST /ga4/v1beta/properties/{property_id}:runReport") == 0

    key = json.loads(ga4_env["GA4_CREDENTIALS"])
    secrets = [key["private_key_id"], *key["private_key"].splitlines()[1:3]]
    everything = "\n".join(str(e) for e in result.all_events)
    assert not [s for s in secrets if s in everything]



def test_token_health_is_an_error_while_the_credentials_need_reauthorizing(sandbox, ga4_env, clean) -> None:
    requests.post(f"{sandbox.base_url}/_admin/ga4/revoke", json={"principal": "service_account"}, timeout=10)
    defs = build_defs(get_config())
    run(defs, RESORTS, "2026-11-20", keys=(TRAFFIC_KEY,))
    only_checks = dg.materialize([*defs.assets, *defs.asset_checks], resources={"warehouse": WarehouseResource(),
                                                                                 **defs.resources},
                                 selection=dg.AssetSelection.checks_for_assets(TRAFFIC_KEY), raise_on_error=False)
    health = checks_of(only_checks)["traffic_acquisition.token_health"]
    assert not health.passed and health.severity == dg.AssetCheckSeverity.ERROR
    assert "re-authentication" in health.description


# -- checks at their thresholds (clock injected, sync log and quota readings written directly) ---------

def run_checks(now: datetime) -> dict[str, dg.AssetCheckEvaluation]:
    from adpipeline.sources.ga4.checks import build_checks

    config = get_config()
    defs = build_defs(config)
    checks = build_checks(config, REPORTS, clock=lambda: now)
    result = dg.materialize([*defs.assets, *checks], resources={"warehouse": WarehouseResource(), **defs.resources},
                            selection=dg.AssetSelection.checks_for_assets(TRAFFIC_KEY), raise_on_error=False)
    return checks_of(result)


def seed_success(conn: psycopg.Connection, finished: datetime) -> None:
    for pid in (RESORTS, LODGES):
        conn.execute("INSERT INTO ops.etl_sync_log (source, scope, entity, sync_type, status, started_at, finished_at)"
                     " VALUES ('ga4', %s, 'traffic_acquisition', 'restatement', 'success', %s, %s)",
                     (pid, finished - timedelta(minutes=1), finished))
    conn.commit()


@pytest.mark.parametrize(("late_by", "expected"), [
    (timedelta(hours=11, minutes=59), None), (timedelta(hours=12, minutes=1), "WARN"),
    (timedelta(hours=23, minutes=59), "WARN"), (timedelta(hours=24, minutes=1), "ERROR"),
])
def test_lateness_warns_after_12_hours_and_errors_after_24(clean, conn, late_by, expected) -> None:
    finished = datetime(2026, 11, 23, 14, 0, tzinfo=timezone.utc)
    seed_success(conn, finished)  # the 4-hourly cadence has no quiet hours: lateness is the last success's age
    lateness = run_checks(finished + late_by)["traffic_acquisition.lateness"]
    assert (None if lateness.passed else lateness.severity.value) == expected


@pytest.mark.parametrize(("remaining", "observed_hours_ago", "expected"), [
    (40_000, 1, None),  # exactly 20% left
    (39_999, 1, "WARN"),
    (5_000, 1, "WARN"),
    (5_000, 10, None),  # read before midnight Pacific: the daily quota has reset since
    (33_400, 1, "WARN"),  # issue 16: 16.7% left; `consumed` (5) is that one request's cost, not a running total
])
def test_quota_headroom_warns_below_20_percent_of_the_days_tokens(clean, conn, remaining, observed_hours_ago,
                                                                  expected) -> None:
    now = datetime(2026, 11, 23, 14, 0, tzinfo=timezone.utc)  # 06:00 Pacific: the day's quota began 6 h ago
    seed_success(conn, now)
    conn.execute(f"INSERT INTO {REPORT_METADATA.qualified} (report, property_id, report_date, observed_at,"
                 " tokens_per_day_consumed, tokens_per_day_remaining) VALUES ('traffic_acquisition', %s,"
                 " '2026-11-22', %s, %s, %s)", (LODGES, now - timedelta(hours=observed_hours_ago),
                                                5, remaining))
    conn.commit()
    headroom = run_checks(now)["traffic_acquisition.quota_headroom"]
    assert (None if headroom.passed else headroom.severity.value) == expected
    if expected:
        assert LODGES in headroom.description and "20%" in headroom.description


# -- definitions -----------------------------------------------------------------------------------

def test_the_slice_is_partitioned_by_day_and_property_and_fully_described() -> None:
    from adpipeline.warehouse.definitions import build_defs as warehouse_defs

    defs = build_defs(get_config())
    graph = dg.Definitions.merge(warehouse_defs(), defs).resolve_asset_graph()
    keys = sorted(graph.get_all_asset_keys())
    assert keys == [LANDING_KEY, TRAFFIC_KEY]
    for key in keys:
        node = graph.get(key)
        assert node.group_name == "ga4" and node.description and node.code_version and node.kinds
        partitions = node.partitions_def
        assert isinstance(partitions, dg.MultiPartitionsDefinition)
        dims = {d.name: d.partitions_def for d in partitions.partitions_defs}
        assert dims["date"].timezone == "America/Jamaica" and dims["property"].get_partition_keys() == [RESORTS, LODGES]
    assert all(not spec.blocking for c in defs.asset_checks for spec in c.check_specs)
    assert TRAFFIC_ACQUISITION.code_version != LANDING_PAGE_EVENTS.code_version


def test_each_report_table_matches_its_migration(conn) -> None:
    for table in [*(r.table for r in REPORTS), REPORT_METADATA]:
        rows = conn.execute("SELECT column_name, data_type, numeric_precision, numeric_scale FROM"
                            " information_schema.columns WHERE table_schema = %s AND table_name = %s"
                            " AND column_name NOT IN ('payload', 'loaded_at') ORDER BY ordinal_position",
                            (table.schema, table.name)).fetchall()
        declared = [(name, pg.split("(")[0]) for name, pg in table.columns.items()]
        names = {"text": "text", "date": "date", "boolean": "boolean", "bigint": "bigint", "numeric": "numeric",
                 "timestamptz": "timestamp with time zone"}
        assert [(r[0], r[1]) for r in rows] == [(n, names[t]) for n, t in declared], table.qualified
        key = conn.execute("SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i CROSS JOIN LATERAL"
                           " unnest(i.indkey) WITH ORDINALITY k(attnum, ord) JOIN pg_attribute a ON"
                           " a.attrelid = i.indrelid AND a.attnum = k.attnum WHERE i.indisprimary AND"
                           " i.indrelid = %s::regclass", (table.qualified,)).fetchone()[0]
        assert tuple(key) == table.key


def test_scheduled_pulls_cover_today_and_the_trailing_three_days_in_each_propertys_zone() -> None:
    config = get_config()
    def keys(now: datetime) -> set[tuple[str, str]]:
        return {(k.keys_by_dimension["property"], k.keys_by_dimension["date"])
                for k in restatement_partition_keys(config, now)}

    # 01:00 in Jamaica, still 23:00 the day before in Denver
    got = keys(datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc))
    assert got == {(RESORTS, f"2026-11-{d}") for d in (20, 21, 22, 23)} | {(LODGES, f"2026-11-{d}") for d in (19, 20, 21, 22)}


def test_the_schedule_requests_today_and_the_restatement_days_of_every_property():
    from datetime import datetime, timezone

    from adpipeline.config import get_config
    from adpipeline.definitions import defs

    config = get_config()
    schedule = defs.resolve_schedule_def("ga4_reports")
    assert schedule.cron_schedule == "0 */4 * * *" and schedule.execution_timezone == "America/Jamaica"
    tick = datetime(2026, 11, 23, 16, tzinfo=timezone.utc)
    with dg.build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def()) as context:
        requests = list(schedule.evaluate_tick(context).run_requests)
    keys = {(r.partition_key.keys_by_dimension["date"], r.partition_key.keys_by_dimension["property"]) for r in requests}
    per_property = len(keys) // len(config.ga4.properties)
    assert per_property == config.ga4.restatement_days + 1
    assert ("2026-11-23", config.ga4.properties[0].id) in keys and ("2026-11-20", config.ga4.properties[0].id) in keys
    assert len({r.run_key for r in requests}) == len(requests)


def test_a_failed_day_is_not_masked_by_a_later_success_of_the_same_property(clean, conn) -> None:
    """Issue 24 finding 4, for GA4: all_scopes_loaded judges each (property, day) of the re-pulled window."""
    now = datetime(2026, 11, 23, 14, 0, tzinfo=timezone.utc)
    rows = [(RESORTS, date(2026, 11, 21), "failed"), (RESORTS, date(2026, 11, 22), "success"),
            (LODGES, date(2026, 11, 21), "success"), (LODGES, date(2026, 11, 22), "success")]
    for pid, day, status in rows:
        conn.execute("INSERT INTO ops.etl_sync_log (source, scope, entity, sync_type, status, window_start,"
                     " window_end, started_at, finished_at) VALUES ('ga4', %s, 'traffic_acquisition', 'restatement',"
                     " %s, %s, %s, %s, %s)", (pid, status, day, day, now - timedelta(hours=2), now - timedelta(hours=1)))
    conn.commit()
    loaded = run_checks(now)["traffic_acquisition.all_scopes_loaded"]
    assert not loaded.passed and loaded.severity == dg.AssetCheckSeverity.ERROR
    assert RESORTS in loaded.description and "2026-11-21" in loaded.description
    assert LODGES not in loaded.description


def test_a_report_declared_only_in_the_config_gets_its_table_and_later_a_new_metric(sandbox, ga4_env, conn) -> None:
    def config(metrics: str):
        return parse_config(f"""
ga4:
  reports:
    - name: channel_sessions
      description: sessions by channel
      dimensions: [{{name: sessionDefaultChannelGroup, column: channel}}]
      metrics: [{metrics}]
  properties:
    - {{id: "310000001", name: Resorts, timezone: America/Jamaica, currency: USD}}
""")
    conn.execute("DROP TABLE IF EXISTS raw_ga4.channel_sessions")
    conn.commit()
    key = dg.AssetKey(["ga4", "channel_sessions"])
    day = "2026-11-20"
    first = config("{name: sessions, type: TYPE_INTEGER}")
    [report] = [Report.from_config(spec) for spec in first.ga4.reports]
    assert run(build_defs(first), RESORTS, day, keys=(key,)).success
    assert normalised(stored(conn, report, RESORTS, day)) == normalised(truth(sandbox, report, RESORTS, day))

    wider = config("{name: sessions, type: TYPE_INTEGER}, {name: engagedSessions, type: TYPE_INTEGER}")
    [report] = [Report.from_config(spec) for spec in wider.ga4.reports]
    assert run(build_defs(wider), RESORTS, day, keys=(key,)).success
    rows = stored(conn, report, RESORTS, day)
    assert normalised(rows) == normalised(truth(sandbox, report, RESORTS, day))
    assert rows and all(isinstance(r["engaged_sessions"], int) for r in rows)

    rekeyed = parse_config(wider.model_dump_json().replace('"channel"', '"channel_group"'))  # a changed dimension
    result = run(build_defs(rekeyed), RESORTS, day, keys=(key,))
    assert not result.success and "give the report a new name" in failure_message(result)
    conn.execute("DROP TABLE raw_ga4.channel_sessions")
    conn.commit()


def test_a_401_to_a_fresh_token_marks_the_credentials_invalid_and_fails_every_scope_once(sandbox, ga4_env, clean):
    # the token endpoint still mints, the Data API refuses every token (API disabled for the project, say)
    unauthenticated = {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "Request had invalid "
                                 "authentication credentials. Expected OAuth 2 access token."}}
    sandbox.admin.add_faults({"path_regex": r"^/ga4/v1beta/properties/.*:runReport$", "status": 401,
                              "body": unauthenticated, "count": None})
    try:
        config = parse_config("""
ga4:
  properties:
    - {id: "310000001", name: Resorts, timezone: America/Jamaica, currency: USD}
    - {id: "310000002", name: Lodges, timezone: America/Denver, currency: USD}
""")
        defs = build_defs(config)
        day = "2026-11-20"
        both = dg.materialize(
            list(defs.assets), resources={"warehouse": WarehouseResource(), **defs.resources}, selection=[LANDING_KEY],
            tags={"dagster/asset_partition_range_start": f"{day}|{RESORTS}",
                  "dagster/asset_partition_range_end": f"{day}|{LODGES}"}, raise_on_error=False)
        assert not both.success
        message = failure_message(both)
        assert "2 of 2 scope(s) failed" in message and "refused a freshly minted access token" in message
        assert "GA4_CREDENTIALS" in message
        # one fresh token was tried once; the second property did not mint or call again
        assert sandbox.admin.count("POST /ga4/token") == 2
        assert sandbox.admin.count("POST /ga4/v1beta/properties/{property_id}:runReport") == 2

        # the store, `tokens status` and the token check agree at once
        [row] = [r for r in token_rows() if r["platform"] == "ga4"]
        assert row["health"] == "EXPIRED" and "freshly minted" in row["last_error"]
        only_checks = dg.materialize([*defs.assets, *defs.asset_checks],
                                     resources={"warehouse": WarehouseResource(), **defs.resources},
                                     selection=dg.AssetSelection.checks_for_assets(TRAFFIC_KEY), raise_on_error=False)
        health = checks_of(only_checks)["traffic_acquisition.token_health"]
        assert not health.passed and health.severity == dg.AssetCheckSeverity.ERROR

        # the next run within the hour fails from the store: no token request, no loop
        again = run(defs, RESORTS, day)
        assert not again.success and "refused a freshly minted access token" in failure_message(again)
        assert sandbox.admin.count("POST /ga4/token") == 2
    finally:
        sandbox.admin.clear_faults()
