"""Breezeway assets and checks, materialized with Dagster on the sandbox subprocess and the real warehouse.

One full load of all 8 regions (module fixture) is shared; tests then change things upstream, move the
sandbox clock and run again, in the order a week of operation would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import pytest
import requests
from psycopg.types.json import Jsonb

from adpipeline.clock import CLOCK_URL_ENV
from adpipeline.cli import token_rows
from adpipeline.config import BreezewayRegion, get_config
from adpipeline.monitoring.sensors import run_failure_alert_sensor
from adpipeline.sandbox.breezeway import demo_environment
from adpipeline.sandbox.process import SandboxProcess
from adpipeline.sources.breezeway.assets import (
    PEOPLE_KEY,
    PROPERTIES_KEY,
    RESERVATIONS_KEY,
    SUPPLIES_KEY,
    TAGS_KEY,
    TASKS_KEY,
    build_assets,
)
from adpipeline.sources.breezeway.loads import choose_sync_type
from adpipeline.sources.breezeway.checks import build_checks
from adpipeline.sources.breezeway.resources import BreezewayResource
from adpipeline.sources.cursors import window_start
from adpipeline.sources.breezeway.tables import (
    PEOPLE,
    PROPERTIES,
    RESERVATIONS,
    SUPPLIES,
    TAGS,
    TASK_CHILDREN,
    TASKS,
    reservation_row,
    task_rows,
)
from adpipeline.warehouse.resource import WarehouseResource

CONFIG = get_config()
ALL_TABLES = (PROPERTIES, RESERVATIONS, TASKS, *TASK_CHILDREN, PEOPLE, SUPPLIES, TAGS)
REGIONS = [r.code for r in CONFIG.breezeway.regions]
COMPANY = {r.code: r.company_id for r in CONFIG.breezeway.regions}
RESERVATION_ROUTE = "GET /breezeway/public/inventory/v1/reservation"
ALL_KEYS = (PROPERTIES_KEY, RESERVATIONS_KEY, TASKS_KEY, PEOPLE_KEY, SUPPLIES_KEY, TAGS_KEY)
ENTITY_ROUTES = {  # sandbox route -> entity, for the per-entity call counts
    "POST /breezeway/public/auth/v1/": "auth", "POST /breezeway/public/auth/v1/refresh": "auth",
    "GET /breezeway/public/inventory/v1/property": "properties",
    "GET /breezeway/public/inventory/v1/property/{property_id:int}": "properties",
    RESERVATION_ROUTE: "reservations", "GET /breezeway/public/inventory/v1/task/": "tasks",
    "GET /breezeway/public/inventory/v1/people": "people", "GET /breezeway/public/inventory/v1/supplies": "supplies",
    "GET /breezeway/public/inventory/v1/task/tags": "tags",
}


ENTITY_KEYS = {k.path[-1]: k for k in ALL_KEYS}


def calls_by_entity(by_route: dict[str, int]) -> dict[str, int]:
    out = {entity: 0 for entity in dict.fromkeys(ENTITY_ROUTES.values())}
    for route, n in by_route.items():
        out[ENTITY_ROUTES[route]] += n
    return out


@dataclass
class Loaded:
    sandbox: SandboxProcess
    resources: dict[str, Any]
    assets: list[dg.AssetsDefinition]
    full_calls: dict[str, int] = field(default_factory=dict)
    full_metadata: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.instance = dg.DagsterInstance.ephemeral()
        self._jobs: dict[tuple[dg.AssetKey, ...], dg.JobDefinition] = {}

    def run(self, region: str, *keys: dg.AssetKey, mode: str = "auto") -> dg.ExecuteInProcessResult:
        """One run of the given assets (all six by default) for one region, like a scheduled run."""
        keys = keys or tuple(ALL_KEYS)
        if keys not in self._jobs:
            defs = dg.Definitions(assets=self.assets, resources=self.resources,
                                  jobs=[dg.define_asset_job("job", selection=list(keys))])
            self._jobs[keys] = defs.resolve_job_def("job")
        ops = {f"breezeway__{k.path[-1]}": {"config": {"mode": mode}} for k in keys if k in (RESERVATIONS_KEY, TASKS_KEY)}
        return self._jobs[keys].execute_in_process(partition_key=region, instance=self.instance, raise_on_error=False,
                                                   run_config={"ops": ops})

    def checks(self, *names: str, clock=None) -> dict[str, dg.AssetCheckEvaluation]:
        checks = [c for c in build_checks(CONFIG, **({"clock": clock} if clock else {}))
                  if next(iter(c.check_keys)).name in names]
        result = dg.materialize([*self.assets, *checks], selection=dg.AssetSelection.checks(*checks),
                                resources=self.resources)
        return {f"{e.asset_key.path[-1]}.{e.check_name}": e for e in result.get_asset_check_evaluations()}

    def api(self, path: str, method: str = "GET", **body: Any) -> Any:
        response = requests.request(method, f"{self.sandbox.base_url}/_admin/breezeway{path}", json=body or None,
                                    timeout=30)
        response.raise_for_status()
        return response.json()


def metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, Any]:
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == key)
    return {k: v.value for k, v in event.materialization.metadata.items()}


# This module's own sandbox, at a reduced scale: every region and entity, a third of the rows (the
# full-scale volume is asserted in test_breezeway_sandbox.py), so the 8-region passes stay quick.
SCALE = 0.35


@pytest.fixture(scope="module")
def loaded(warehouse_url: str):
    process = SandboxProcess(scale=SCALE).start()
    sandbox = process
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("TRUNCATE " + ", ".join(t.qualified for t in ALL_TABLES))
        conn.execute("DELETE FROM ops.etl_sync_log WHERE source = 'breezeway'")
        conn.execute("DELETE FROM ops.platform_tokens WHERE platform = 'breezeway'")
    env = pytest.MonkeyPatch()
    for name, value in demo_environment(sandbox.base_url, CONFIG.breezeway.regions).items():
        env.setenv(name, value)
    env.setenv(CLOCK_URL_ENV, sandbox.admin.clock_url)  # this module's own sandbox tells the time
    ctx = Loaded(sandbox, {"breezeway": BreezewayResource(),
                           "warehouse": WarehouseResource(url=warehouse_url)}, build_assets(CONFIG))
    for region in REGIONS:
        result = ctx.run(region, mode="full")
        assert result.success, region
        ctx.full_metadata[region] = {k.path[-1]: metadata(result, k) for k in ALL_KEYS}
    ctx.full_calls = sandbox.admin.requests()["by_route"]
    yield ctx
    env.undo()
    process.stop()


def test_full_load_is_complete_without_duplicates_codes_or_guest_data(loaded: Loaded, conn):
    companies = {c["code"]: c for c in loaded.api("/companies")}
    stored = dict(conn.execute("SELECT region_code, count(*) FROM raw_breezeway.reservations GROUP BY 1").fetchall())
    homes = dict(conn.execute("SELECT region_code, count(*) FROM raw_breezeway.properties GROUP BY 1").fetchall())
    assert stored == {code: companies[code]["reservations"] for code in REGIONS}  # past stays included
    assert homes == {code: companies[code]["properties"] for code in REGIONS}
    assert sum(stored.values()) > 30_000 * SCALE
    assert {m["reservations"]["sync_type"] for m in loaded.full_metadata.values()} == {"full"}
    assert {m["tasks"]["sync_type"] for m in loaded.full_metadata.values()} == {"full"}

    # a second full pass converges to the same rows: nothing new, nothing duplicated
    again = metadata(loaded.run("austin", RESERVATIONS_KEY, mode="full"), RESERVATIONS_KEY)
    assert again["rows_inserted"] == 0 and again["rows_processed"] == stored["austin"]
    assert conn.execute("SELECT count(*) FROM raw_breezeway.reservations WHERE region_code = 'austin'"
                        ).fetchone()[0] == stored["austin"]

    # no access code and no guest identity anywhere in the warehouse
    sensitive = r'"(access_code|guests|email|phone|first_name|last_name|notes)"'
    for table in ("reservations", "properties"):
        leaks = conn.execute(f"SELECT count(*) FROM raw_breezeway.{table} WHERE payload::text ~ %s", (sensitive,))
        assert leaks.fetchone()[0] == 0, table
    assert conn.execute("SELECT count(*) FROM raw_breezeway.reservations r WHERE strpos(r::text, '@') > 0"
                        ).fetchone()[0] == 0  # not one e-mail address
    identities, checked = [], 0
    day = (loaded.sandbox.admin.now() - timedelta(days=30)).date()
    for region in REGIONS:
        for stay in loaded.api(f"/reservations?company_id={COMPANY[region]}&checkout_date={day}&limit=5"):
            row = conn.execute("SELECT r::text, access_code_hash FROM raw_breezeway.reservations r"
                               " WHERE region_code = %s AND id = %s", (region, stay["id"])).fetchone()
            code = stay["access_code"]
            assert row[1] and len(row[1]) == 32 and code not in row[1]
            assert f'"{code}"' not in row[0] and f",{code}," not in row[0]
            identities += [f"%{g[k]}%" for g in stay["guests"] for k in ("phone", "last_name")]
            checked += 1
    assert checked >= 8
    assert conn.execute("SELECT count(*) FROM raw_breezeway.reservations r WHERE r::text LIKE ANY(%s)",
                        (identities,)).fetchone()[0] == 0


def test_past_stay_changed_upstream_is_changed_here_after_the_next_incremental_run(loaded: Loaded, conn):
    sandbox = loaded.sandbox
    thirty_days_ago = (sandbox.admin.now() - timedelta(days=30)).date()
    stay = loaded.api(f"/reservations?company_id={COMPANY['hilton_head']}&checkout_date={thirty_days_ago}")[0]
    before = conn.execute("SELECT checkout_time, access_code_hash, status FROM raw_breezeway.reservations"
                          " WHERE region_code = 'hilton_head' AND id = %s", (stay["id"],)).fetchone()
    assert before[0] != time(13, 0)

    sandbox.admin.advance(3600)  # an hour later, upstream: a late checkout is recorded, a new code, a claim
    loaded.api(f"/reservations/{stay['id']}", "POST",
               set={"checkout_time": "13:00:00", "access_code": "918273", "tags": ["damage_claim"]})
    changed_at = sandbox.admin.now()
    sandbox.admin.reset_requests()
    runs = {region: loaded.run(region) for region in REGIONS}  # the next scheduled run of every asset
    assert all(r.success for r in runs.values())
    for entity in ("reservations", "tasks"):
        assert {metadata(r, ENTITY_KEYS[entity])["sync_type"] for r in runs.values()} == {"incremental"}

    after = conn.execute(
        "SELECT checkout_time, access_code_hash, tags, updated_at, checkout_at, timezone"
        " FROM raw_breezeway.reservations WHERE region_code = 'hilton_head' AND id = %s", (stay["id"],)).fetchone()
    assert after[0] == time(13, 0)
    assert after[1] != before[1] and "918273" not in after[1]  # the code changed; it is still not in clear
    assert after[2] == ["damage_claim"] and after[3] == changed_at
    assert after[4] == datetime.combine(thirty_days_ago, time(13, 0), tzinfo=ZoneInfo(after[5]))

    full = calls_by_entity(loaded.full_calls)
    incremental = calls_by_entity(sandbox.admin.requests()["by_route"])
    properties = sum(m["tasks"]["properties"] for m in loaded.full_metadata.values())
    print(f"\nbreezeway API calls per entity, 8 regions, {properties} properties, scale {SCALE} (sandbox counters):")
    for entity in full:
        print(f"  {entity:<13} full {full[entity]:>5}   incremental {incremental[entity]:>5}")
    assert incremental["reservations"] == len(REGIONS) and full["reservations"] >= 10 * incremental["reservations"]
    assert incremental["tasks"] == properties  # one call per property: the only per-property cost
    assert incremental["auth"] == 0  # tokens reused


def test_unknown_property_is_fetched_by_id_or_flagged_never_dropped(loaded: Loaded, conn):
    region = "austin"
    pid, = conn.execute("SELECT property_id FROM raw_breezeway.reservations WHERE region_code = %s"
                        " ORDER BY id LIMIT 1", (region,)).fetchone()
    conn.execute("DELETE FROM raw_breezeway.properties WHERE region_code = %s AND id = %s", (region, pid))
    conn.commit()
    fetched = metadata(loaded.run(region, RESERVATIONS_KEY), RESERVATIONS_KEY)
    assert fetched["properties_fetched"] == 1 and fetched["unknown_property_ids"] == []
    assert conn.execute("SELECT count(*) FROM raw_breezeway.properties WHERE region_code = %s AND id = %s",
                        (region, pid)).fetchone()[0] == 1

    # gone upstream too: the reservations stay, the property is flagged, the check fails naming the region
    saved = conn.execute("SELECT * FROM raw_breezeway.properties WHERE region_code = %s AND id = %s",
                         (region, pid)).fetchone()
    loaded.api(f"/properties/{pid}", "DELETE")
    conn.execute("DELETE FROM raw_breezeway.properties WHERE region_code = %s AND id = %s", (region, pid))
    conn.commit()
    kept = conn.execute("SELECT count(*) FROM raw_breezeway.reservations WHERE region_code = %s AND property_id = %s",
                        (region, pid)).fetchone()[0]
    flagged = metadata(loaded.run(region, RESERVATIONS_KEY), RESERVATIONS_KEY)
    assert flagged["unknown_property_ids"] == [pid] and flagged["properties_fetched"] == 0
    assert conn.execute("SELECT count(*) FROM raw_breezeway.reservations WHERE region_code = %s AND property_id = %s",
                        (region, pid)).fetchone()[0] == kept > 0
    check = loaded.checks("property_known")["reservations.property_known"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert f"in {region} ({kept} row(s), 1 missing id(s))" in check.description

    placeholders = ", ".join(["%s"] * len(saved))
    conn.execute(f"INSERT INTO raw_breezeway.properties VALUES ({placeholders})",
                 [Jsonb(v) if isinstance(v, dict) else v for v in saved])
    conn.commit()
    assert loaded.checks("property_known")["reservations.property_known"].passed


def test_a_region_with_bad_credentials_fails_alone_and_is_reported(loaded: Loaded, conn, monkeypatch):
    bad = "wrong-secret-for-mammoth-7d3"
    region = next(r for r in CONFIG.breezeway.regions if r.code == "mammoth")
    monkeypatch.setenv(region.client_secret_var, bad)
    conn.execute("DELETE FROM ops.platform_tokens WHERE platform = 'breezeway' AND scope = 'mammoth'")
    conn.commit()
    loaded.sandbox.admin.advance(3600)

    results = {code: loaded.run(code, RESERVATIONS_KEY) for code in REGIONS}
    assert [code for code, r in results.items() if not r.success] == ["mammoth"]
    failure = next(e for e in results["mammoth"].all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.user_failure_data.description
    assert message.startswith("breezeway/reservations: 1 of 1 scope(s) failed (nothing loaded): mammoth: "
                              "breezeway mammoth")
    assert "re-authenticate" in message and "Action: " in message and bad not in message
    last = dict(conn.execute("SELECT DISTINCT ON (scope) scope, status FROM ops.etl_sync_log WHERE source = 'breezeway'"
                             " AND entity = 'reservations' ORDER BY scope, started_at DESC").fetchall())
    assert last == {code: "failed" if code == "mammoth" else "success" for code in REGIONS}

    checks = loaded.checks("all_scopes_loaded", "region_token_health")
    loaded_check, token_check = checks["reservations.all_scopes_loaded"], checks["reservations.region_token_health"]
    assert not loaded_check.passed and loaded_check.severity == dg.AssetCheckSeverity.ERROR
    assert "mammoth" in loaded_check.description and "hilton_head" not in loaded_check.description
    assert not token_check.passed and token_check.severity == dg.AssetCheckSeverity.ERROR
    assert "mammoth" in token_check.description and bad not in token_check.description
    status = {r["scope"]: r for r in token_rows() if r["platform"] == "breezeway"}  # `adpipeline tokens status`
    assert set(status) == set(REGIONS)
    assert status["mammoth"]["health"] == "EXPIRED" and "Invalid client credentials" in status["mammoth"]["last_error"]
    assert status["austin"]["health"] == "HEALTHY" and status["austin"]["generation_count"] == 1

    monkeypatch.setenv(region.client_secret_var, demo_environment(loaded.sandbox.base_url, [region])[region.client_secret_var])
    loaded.sandbox.admin.advance(61)  # the failed attempt used this minute's auth call
    assert loaded.run("mammoth", RESERVATIONS_KEY).success
    assert loaded.checks("all_scopes_loaded")["reservations.all_scopes_loaded"].passed


def test_lateness_checks_fire_at_the_thresholds_table(loaded: Loaded, conn):
    def oldest_last_success(entity: str) -> datetime:
        return conn.execute("SELECT min(last) FROM (SELECT max(finished_at) AS last FROM ops.etl_sync_log"
                            " WHERE source = 'breezeway' AND entity = %s AND status = 'success' GROUP BY scope) s",
                            (entity,)).fetchone()[0]

    # hourly feed (no quiet hours): WARN above 2 h, ERROR above 4 h; daily feed: ERROR above 25 h
    hourly, daily = oldest_last_success("reservations"), oldest_last_success("properties")
    expectations = [  # (check, moment, expected severity or None)
        ("reservations.lateness", hourly + timedelta(hours=1.9), None),
        ("reservations.lateness", hourly + timedelta(hours=2.1), dg.AssetCheckSeverity.WARN),
        ("reservations.lateness", hourly + timedelta(hours=4.1), dg.AssetCheckSeverity.ERROR),
        ("properties.lateness", daily + timedelta(hours=24.9), None),
        ("properties.lateness", daily + timedelta(hours=25.1), dg.AssetCheckSeverity.ERROR),
    ]
    for name, moment, severity in expectations:
        evaluation = loaded.checks("lateness", clock=lambda m=moment: m)[name]
        assert (None if evaluation.passed else evaluation.severity) == severity, (name, moment, evaluation.description)


def test_tasks_land_with_children_money_and_local_times_parsed(loaded: Loaded, conn):
    task_id, region = conn.execute(
        "SELECT id, region_code FROM raw_breezeway.tasks WHERE region_code = 'breckenridge' AND department ="
        " 'maintenance' AND costs_total IS NOT NULL AND deleted_at IS NULL ORDER BY id LIMIT 1").fetchone()
    api = loaded.api(f"/tasks/{task_id}")  # the task as the API shows it now
    row = conn.execute("SELECT created_at, finished_at, updated_at, timezone, costs_total, currency, rate_paid,"
                       " supplies_total, property_id FROM raw_breezeway.tasks WHERE region_code = %s AND id = %s",
                       (region, task_id)).fetchone()
    zone = ZoneInfo("America/Denver")
    assert "+" not in api["created_at"] and api["updated_at"].endswith("+00:00")  # naive vs zoned upstream
    assert row[0] == datetime.fromisoformat(api["created_at"]).replace(tzinfo=zone)  # naive = the region's zone
    assert row[1] == datetime.fromisoformat(api["finished_at"]).replace(tzinfo=zone)
    assert row[2] == datetime.fromisoformat(api["updated_at"]) and row[3] == "America/Denver"
    costs = conn.execute("SELECT cost_id, amount, currency FROM raw_breezeway.task_costs WHERE region_code = %s"
                         " AND task_id = %s ORDER BY cost_id", (region, task_id)).fetchall()
    assert costs == [(c["id"], Decimal(c["cost"].split()[0]), c["cost"].split()[1]) for c in api["costs"]]
    assert row[4] == sum(Decimal(c["cost"].split()[0]) for c in api["costs"]) and row[5] == "USD"
    supplies = conn.execute("SELECT supply_id, quantity, unit_cost, total_cost FROM raw_breezeway.task_supplies"
                            " WHERE region_code = %s AND task_id = %s ORDER BY supply_id", (region, task_id)).fetchall()
    assert len(supplies) == len(api["supplies"])
    for supply_id, quantity, unit_cost, total in supplies:
        source = next(x for x in api["supplies"] if x["id"] == supply_id)
        assert (quantity, unit_cost) == (source["quantity"], Decimal(str(source["unit_cost"])))
        assert total == (quantity * unit_cost).quantize(Decimal("0.01"))
    assignees = [r[0] for r in conn.execute("SELECT assignee_id FROM raw_breezeway.task_assignments WHERE region_code"
                                            " = %s AND task_id = %s ORDER BY 1", (region, task_id)).fetchall()]
    assert assignees == sorted(a["assignee_id"] for a in api["assignments"])

    clean = conn.execute("SELECT rate_paid, rate_paid_currency, reservation_id FROM raw_breezeway.tasks WHERE"
                         " region_code = 'breckenridge' AND department = 'housekeeping' AND rate_paid IS NOT NULL"
                         " LIMIT 1").fetchone()
    assert clean[0] > 0 and clean[1] == "USD" and clean[2] is not None  # "120.00 USD" -> 120.00, USD; linked stay
    people = conn.execute("SELECT count(*), count(*) FILTER (WHERE status = 'inactive'),"
                          " count(*) FILTER (WHERE payload::text ~ '\"(email|phone)\"') FROM raw_breezeway.people"
                          " WHERE region_code = 'breckenridge'").fetchone()
    assert people[0] > 0 and people[1] > 0 and people[2] == 0  # every status listed; no contact details stored


def test_deletions_upstream_are_marked_by_the_full_reconciliation_never_dropped(loaded: Loaded, conn):
    region, company = "sea_ranch", COMPANY["sea_ranch"]
    pick = {
        "tasks": conn.execute("SELECT id FROM raw_breezeway.tasks WHERE region_code = %s AND deleted_at IS NULL"
                              " ORDER BY id LIMIT 1", (region,)).fetchone()[0],
        "reservations": conn.execute("SELECT id FROM raw_breezeway.reservations WHERE region_code = %s AND"
                                     " checkout_date < %s ORDER BY id LIMIT 1",
                                     (region, loaded.sandbox.admin.now().date())).fetchone()[0],
        "people": company * 1000 + 1, "supplies": company * 1000 + 2, "tags": company * 100 + 3,
    }
    for kind, item_id in pick.items():
        loaded.api(f"/{kind}/{item_id}", "DELETE")
    loaded.sandbox.admin.advance(3600)
    incremental = loaded.run(region, RESERVATIONS_KEY, TASKS_KEY)  # incremental runs cannot see deletions
    assert {metadata(incremental, k)["sync_type"] for k in (RESERVATIONS_KEY, TASKS_KEY)} == {"incremental"}
    assert conn.execute("SELECT deleted_at FROM raw_breezeway.tasks WHERE region_code = %s AND id = %s",
                        (region, pick["tasks"])).fetchone()[0] is None

    result = loaded.run(region, mode="full")  # the periodic full reconciliation
    assert result.success
    for kind, item_id in pick.items():
        deleted_at = conn.execute(f"SELECT deleted_at FROM raw_breezeway.{kind} WHERE region_code = %s AND id = %s",
                                  (region, item_id)).fetchone()
        assert deleted_at is not None and deleted_at[0] is not None, kind  # kept, and marked with when
        assert metadata(result, ENTITY_KEYS[kind])["rows_deleted"] >= 1, kind
        logged = conn.execute("SELECT records_deleted FROM ops.etl_sync_log WHERE source = 'breezeway' AND scope = %s"
                              " AND entity = %s AND status = 'success' ORDER BY id DESC LIMIT 1",
                              (region, kind)).fetchone()[0]
        assert logged == metadata(result, ENTITY_KEYS[kind])["rows_deleted"], kind
    again = loaded.run(region, mode="full")  # nothing new vanished: nothing more marked
    assert all(metadata(again, k)["rows_deleted"] == 0 for k in ALL_KEYS)


def test_row_count_guard_fails_on_a_scripted_mass_disappearance(loaded: Loaded, conn):
    region = "hill_country"
    before = conn.execute("SELECT count(*) FROM raw_breezeway.tasks WHERE region_code = %s", (region,)).fetchone()[0]
    loaded.api("/vanish", "POST", kind="tasks", company_id=COMPANY[region], share=0.6)
    loaded.sandbox.admin.advance(60)
    result = loaded.run(region, TASKS_KEY, mode="full")
    assert result.success
    marked = metadata(result, TASKS_KEY)["rows_deleted"]
    assert marked > 0.4 * before
    assert conn.execute("SELECT count(*) FROM raw_breezeway.tasks WHERE region_code = %s", (region,)
                        ).fetchone()[0] >= before  # marked, not dropped
    guard = loaded.checks("row_count_guard")["tasks.row_count_guard"]
    assert not guard.passed and guard.severity == dg.AssetCheckSeverity.ERROR
    assert region in guard.description and "austin" not in guard.description


def test_referential_check_fails_on_an_orphan_task(loaded: Loaded, conn):
    region = "breckenridge"
    assert loaded.checks("references_known")["tasks.references_known"].passed
    reservation_id = conn.execute("SELECT reservation_id FROM raw_breezeway.tasks WHERE region_code = %s AND"
                                  " deleted_at IS NULL AND reservation_id IS NOT NULL ORDER BY id LIMIT 1",
                                  (region,)).fetchone()[0]
    saved = conn.execute("SELECT * FROM raw_breezeway.reservations WHERE region_code = %s AND id = %s",
                         (region, reservation_id)).fetchone()
    conn.execute("DELETE FROM raw_breezeway.reservations WHERE region_code = %s AND id = %s", (region, reservation_id))
    conn.commit()
    try:
        check = loaded.checks("references_known")["tasks.references_known"]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        assert f"tasks whose linked reservation is unknown in {region}" in check.description
    finally:
        placeholders = ", ".join(["%s"] * len(saved))
        conn.execute(f"INSERT INTO raw_breezeway.reservations VALUES ({placeholders})",
                     [Jsonb(v) if isinstance(v, (dict, list)) else v for v in saved])
        conn.commit()
    assert loaded.checks("references_known")["tasks.references_known"].passed


def test_a_failing_property_keeps_the_others_tasks_and_is_reported(loaded: Loaded, conn):
    region = "smoky"
    property_id = conn.execute("SELECT id FROM raw_breezeway.properties WHERE region_code = %s ORDER BY id"
                               " LIMIT 1 OFFSET 3", (region,)).fetchone()[0]
    loaded.sandbox.admin.add_faults({"path": "/breezeway/public/inventory/v1/task/", "query": {"home_id": str(property_id)},
                                     "status": 400, "body": {"message": "Invalid home"}, "count": None})
    loaded.sandbox.admin.advance(3600)
    result = loaded.run(region, TASKS_KEY)
    # the step fails naming the region, the property and the action: the run is red, run-failure alerts fire
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").step_failure_data.user_failure_data
    assert failure.description.startswith("breezeway/tasks: 1 of 1 scope(s) failed, 1 of them partial "
                                          "(1 committed and recorded)")
    assert f"{region}: partial: tasks of 1 of" in failure.description and str(property_id) in failure.description
    assert "Action: " in failure.description and "rerun the region's partition" in failure.description
    # ...while the healthy properties' tasks committed and their materialization is recorded (the marts sensor
    # rebuilds from it), in the one metadata shape of every source
    records = loaded.instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    [event] = [r.event_log_entry.asset_materialization for r in records]
    assert event.asset_key == TASKS_KEY and event.partition == region
    meta = {k: v.value for k, v in event.metadata.items()}
    assert meta["failed_properties"] == [property_id] and meta["sync_type"] == "incremental"
    assert meta["partial_scopes"] == [region] and meta["failed_scopes"] == [] and meta["scopes_loaded"] == 1
    # one sync-log row for the attempt, first-class `partial` (not a success row plus a failed one)
    rows = conn.execute("SELECT status, error, records_processed FROM ops.etl_sync_log WHERE source = 'breezeway'"
                        " AND entity = 'tasks' AND dagster_run_id = %s", (result.run_id,)).fetchall()
    assert len(rows) == 1 and rows[0][0] == "partial" and str(property_id) in rows[0][1] and rows[0][2] > 0
    check = loaded.checks("all_scopes_loaded")["tasks.all_scopes_loaded"]  # ...and the gap is reported
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR and region in check.description
    assert str(property_id) in check.metadata["errors"].value[region]
    # the run-failure alert carries the same sentence
    conn.execute("UPDATE ops.alerts SET resolved_at = now() WHERE dedupe_key = 'run_failure:job' AND resolved_at IS NULL")
    conn.commit()
    run = loaded.instance.get_run_by_id(result.run_id)
    event = loaded.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[0].dagster_event
    sensor = run_failure_alert_sensor()
    sensor(dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_event=event, dagster_instance=loaded.instance,
                                              dagster_run=run, resources={"warehouse": loaded.resources["warehouse"]}
                                              ).for_run_failure())
    [(severity, message)] = conn.execute("SELECT severity, message FROM ops.alerts WHERE dagster_run_id = %s",
                                         (run.run_id,)).fetchall()
    assert severity == "critical" and f"{region}: partial: tasks of 1 of" in message and "Action: " in message
    loaded.sandbox.admin.clear_faults()
    recovered = loaded.run(region, TASKS_KEY)  # after a partial run the next one is a full pass
    assert metadata(recovered, TASKS_KEY)["sync_type"] == "full" and metadata(recovered, TASKS_KEY)["failed_properties"] == []
    assert loaded.checks("all_scopes_loaded")["tasks.all_scopes_loaded"].passed


# ---- pure behaviour --------------------------------------------------------------------------------------


def test_local_times_keep_their_zone_and_convert_to_utc_across_dst():
    region = BreezewayRegion(code="nashville", company_id=8558, timezone="America/Chicago")
    raw = {"id": 1, "property_id": 2, "checkin_date": "2026-07-03", "checkin_time": "16:00:00",
           "checkout_date": "2026-11-02", "checkout_time": "10:00:00", "access_code": "4821",
           "guests": [{"first_name": "A", "email": "a@example.com"}, {"first_name": "B"}],
           "created_at": "2026-06-11T00:28:25", "updated_at": "2026-06-11T00:28:25+00:00"}
    row = reservation_row(region, raw, lambda text: f"h{len(text)}")
    assert row["checkin_at"] == datetime(2026, 7, 3, 21, 0, tzinfo=timezone.utc)  # CDT, UTC-5
    assert row["checkout_at"] == datetime(2026, 11, 2, 16, 0, tzinfo=timezone.utc)  # CST, UTC-6
    assert (row["checkin_date"], row["checkin_time"], row["timezone"]) == (date(2026, 7, 3), time(16), "America/Chicago")
    assert row["created_at"] == datetime(2026, 6, 11, 5, 28, 25, tzinfo=timezone.utc)  # naive = the region's zone
    assert row["updated_at"] == datetime(2026, 6, 11, 0, 28, 25, tzinfo=timezone.utc)
    assert row["guest_count"] == 2 and "guests" not in row["payload"] and "access_code" not in row["payload"]
    assert "4821" not in str(row)


def test_sync_type_is_incremental_with_a_periodic_full_pass():
    now = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
    week = timedelta(days=7)
    assert choose_sync_type("auto", None, None, now, week) == "full"  # nothing stored yet
    assert choose_sync_type("auto", now, now - timedelta(days=1), now, week) == "incremental"
    assert choose_sync_type("auto", now, now - timedelta(days=8), now, week) == "full"
    assert choose_sync_type("auto", now, None, now, week) == "full"
    assert choose_sync_type("incremental", now, None, now, week) == "incremental"
    assert choose_sync_type("full", now, now, now, week) == "full"
    with pytest.raises(ValueError):
        choose_sync_type("sometimes", now, now, now, week)


def test_migrations_create_exactly_the_tables_the_loader_writes(conn):
    for table in ALL_TABLES:
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
            " ORDER BY ordinal_position", (table.schema, table.name)).fetchall()]
        expected = [*table.columns, *(["payload"] if table.payload else []), "loaded_at"]
        assert sorted(columns) == sorted(expected), table.qualified
        key = [r[0] for r in conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
            (table.qualified,)).fetchall()]
        assert tuple(key) == table.key, table.qualified


def test_task_money_is_parsed_with_its_currency_and_never_summed_across_currencies():
    region = BreezewayRegion(code="mammoth", company_id=14720, timezone="America/Los_Angeles")
    raw = {"id": 7, "home_id": 3, "rate_paid": "120.00 USD", "created_at": "2026-03-08T01:30:00",
           "updated_at": "2026-03-08T10:00:00+00:00", "finished_at": "2026-07-01T12:00:00",
           "costs": [{"id": 1, "cost": "35.50 USD", "type_cost": {"code": "labor"}},
                     {"id": 2, "cost": "10.00 USD", "type_cost": {"code": "fee"}}],
           "supplies": [{"id": 9, "quantity": 3, "unit_cost": 4.25, "billable": True}],
           "assignments": [{"id": 70, "assignee_id": 5, "name": "Sam", "type_task_user_status": {"code": "accepted"}}]}
    row, children = task_rows(region, raw)
    assert (row["rate_paid"], row["rate_paid_currency"]) == (Decimal("120.00"), "USD")
    assert (row["costs_total"], row["supplies_total"], row["currency"]) == (Decimal("45.50"), Decimal("12.75"), "USD")
    assert row["created_at"] == datetime(2026, 3, 8, 9, 30, tzinfo=timezone.utc)  # PST (UTC-8) before the DST switch
    assert row["finished_at"] == datetime(2026, 7, 1, 19, 0, tzinfo=timezone.utc)  # PDT (UTC-7)
    assert [len(children[t.name]) for t in TASK_CHILDREN] == [1, 1, 2]

    raw["costs"][1]["cost"] = "10.00 EUR"
    row, children = task_rows(region, raw)
    assert row["costs_total"] is None and row["currency"] is None  # USD + EUR has no total
    assert [c["currency"] for c in children["task_costs"]] == ["USD", "EUR"]


def test_a_property_deleted_upstream_takes_its_reservations_and_tasks_in_the_same_reconciliation(
        loaded: Loaded, conn):
    region = "mammoth"
    prop = conn.execute(
        "SELECT p.id FROM raw_breezeway.properties p WHERE p.region_code = %s AND p.deleted_at IS NULL"
        " AND EXISTS (SELECT 1 FROM raw_breezeway.reservations r WHERE r.region_code = p.region_code"
        "             AND r.property_id = p.id AND r.deleted_at IS NULL)"
        " AND EXISTS (SELECT 1 FROM raw_breezeway.tasks t WHERE t.region_code = p.region_code"
        "             AND t.property_id = p.id AND t.deleted_at IS NULL) ORDER BY p.id LIMIT 1", (region,)).fetchone()[0]
    counts = {t: conn.execute(f"SELECT count(*) FROM raw_breezeway.{t} WHERE region_code = %s AND property_id = %s"
                              " AND deleted_at IS NULL", (region, prop)).fetchone()[0] for t in ("reservations", "tasks")}
    loaded.api(f"/properties/{prop}", "DELETE")
    loaded.sandbox.admin.advance(3600)
    result = loaded.run(region, PROPERTIES_KEY)  # the daily properties listing, not a weekly full pass
    assert result.success
    assert metadata(result, PROPERTIES_KEY)["children_marked_deleted"] == counts
    deleted = conn.execute("SELECT deleted_at FROM raw_breezeway.properties WHERE region_code = %s AND id = %s",
                           (region, prop)).fetchone()[0]
    assert deleted is not None
    for table in ("reservations", "tasks"):  # kept for audit, marked with the same time
        rows = conn.execute(f"SELECT deleted_at FROM raw_breezeway.{table} WHERE region_code = %s AND property_id = %s",
                            (region, prop)).fetchall()
        assert len(rows) == counts[table] and {d for (d,) in rows} == {deleted}, table
    again = loaded.run(region, PROPERTIES_KEY)
    assert metadata(again, PROPERTIES_KEY)["children_marked_deleted"] == {}


def test_a_future_dated_updated_at_never_inverts_the_incremental_window(loaded: Loaded, conn):
    """Kept last in this module: it leaves a future-dated reservation behind (as upstream would)."""
    sandbox = loaded.sandbox
    region = "smoky"
    def stay(days_ago: int) -> dict:
        day = (sandbox.admin.now() - timedelta(days=days_ago)).date()
        return loaded.api(f"/reservations?company_id={COMPANY[region]}&checkout_date={day}")[0]

    liar, honest = stay(10), stay(12)
    future = (sandbox.admin.now() + timedelta(days=35)).replace(microsecond=0)
    sandbox.admin.advance(600)
    loaded.api(f"/reservations/{liar['id']}", "POST", set={"updated_at": future.isoformat(), "tags": ["vip"]})
    assert loaded.run(region, RESERVATIONS_KEY).success
    stored = conn.execute("SELECT max(updated_at) FROM raw_breezeway.reservations WHERE region_code = %s",
                          (region,)).fetchone()[0]
    assert stored == future  # kept as sent: the cursor now lies in the future

    sandbox.admin.advance(3600)  # an honest change upstream, an hour later; the next run comes 8 hours on
    loaded.api(f"/reservations/{honest['id']}", "POST", set={"checkout_time": "12:30:00"})
    sandbox.admin.advance(8 * 3600)  # beyond the 6-hour overlap
    result = loaded.run(region, RESERVATIONS_KEY)
    assert result.success
    meta = metadata(result, RESERVATIONS_KEY)
    assert meta["sync_type"] == "incremental"
    assert future.isoformat() in meta["future_cursor_clamped"] and "in the future" in meta["future_cursor_clamped"]
    # from the newest honest update time (the previous load), not from now: nothing in between is skipped
    assert datetime.fromisoformat(meta["updated_since"]) < sandbox.admin.now() - timedelta(hours=8)
    row = conn.execute("SELECT checkout_time FROM raw_breezeway.reservations WHERE region_code = %s AND id = %s",
                       (region, honest["id"])).fetchone()
    assert row[0] == time(12, 30)  # the honest change is loaded, not skipped by an inverted window


def test_window_start_clamps_a_future_cursor_to_now_and_says_so():
    now = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    overlap = timedelta(hours=1)
    assert window_start(now - timedelta(days=1), overlap, now, what="x") == (now - timedelta(days=1, hours=1), None)
    future = datetime(2026, 12, 28, tzinfo=timezone.utc)
    start, warning = window_start(future, overlap, now, what="breezeway smoky tasks")
    assert start == now - overlap  # nothing older stored: from now
    assert "2026-12-28T00:00:00+00:00" in warning and warning.startswith("breezeway smoky tasks")
    honest = now - timedelta(hours=5)
    assert window_start(future, overlap, now, what="x", not_future=honest)[0] == honest - overlap
