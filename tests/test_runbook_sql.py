"""Every SELECT of the operators' runbooks (../shared/seeds/*.md, extracted at test time) runs verbatim on the
warehouse after a small real load (Meta from the sandbox, one Breezeway region), through the compatibility views
of migration 0007, and returns what the runbook expects of a healthy pipeline; the Meta guide's token-status
query agrees with `adpipeline tokens status` for every kind of token."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import dagster as dg
import psycopg
import pytest
from runbook_sql import Statement, runbooks_dir, statements
from test_meta_assets import ADS_INSIGHTS, HIERARCHY, Meta, meta  # noqa: F401 - the fixture

from adpipeline.cli import token_rows
from adpipeline.config import get_config
from adpipeline.sandbox.breezeway import demo_environment
from adpipeline.sources.breezeway.assets import build_assets
from adpipeline.sources.breezeway.resources import BreezewayResource
from adpipeline.sources.breezeway.tables import PEOPLE, PROPERTIES, RESERVATIONS, SUPPLIES, TAGS, TASK_CHILDREN, TASKS
from adpipeline.warehouse.resource import WarehouseResource

CONFIG = get_config()
REGION = CONFIG.breezeway.regions[0].code
ENTITIES = ("properties", "reservations", "tasks", "people", "supplies", "tags")
# Insta-Connect's queries read that application's own database (psql -d insta_connect: its meta_accounts and
# webhook_events tables); it is not a pipeline this project replaces, so they are not run here.
OTHER_APPLICATIONS = {"insta_connect"}
TOKEN_STATUS_QUERY = "END as status"  # the Meta guide's "Check Current Token Status"


def expand(statement: Statement) -> list[str]:
    """The statement as an operator runs it: {region} is a configured region, {entity} every Breezeway entity."""
    sql = statement.sql.replace("{region}", REGION)
    return [sql.replace("{entity}", e) for e in ENTITIES] if "{entity}" in sql else [sql]


def run(conn: psycopg.Connection, sql: str) -> tuple[list[str], list[tuple]]:
    """(column names, rows); a COPY ... TO STDOUT is run as COPY and its CSV read back."""
    with conn.cursor() as cur:
        if sql.lstrip().upper().startswith("COPY"):
            with cur.copy(sql) as copy:
                text = b"".join(bytes(chunk) for chunk in copy).decode()
            header, *rows = list(csv.reader(io.StringIO(text)))
            return header, [tuple(r) for r in rows]
        cur.execute(sql)
        return [c.name for c in cur.description], cur.fetchall()


@pytest.fixture
def loaded(meta: Meta, sandbox, conn, warehouse_url, monkeypatch):  # noqa: F811
    """A demo-like load stamped with the warehouse's own clock, so the runbooks' NOW()-relative filters see it:
    Meta's hierarchy and today's insights, and one Breezeway region, all six entities, full."""
    now = conn.execute("SELECT now()").fetchone()[0]
    sandbox.admin.set_clock(now)
    conn.execute("TRUNCATE " + ", ".join(t.qualified for t in (PROPERTIES, RESERVATIONS, TASKS, *TASK_CHILDREN,
                                                                PEOPLE, SUPPLIES, TAGS)))
    # the session's warehouse holds what earlier test files left (GA4 tokens, failed syncs): the runbooks'
    # queries read whole tables, so this load starts from none but the Meta token the fixture uses
    conn.execute("DELETE FROM ops.etl_sync_log")
    conn.execute("DELETE FROM ops.platform_tokens WHERE platform <> 'meta'")
    conn.commit()
    today = now.astimezone(timezone(timedelta(hours=-5))).date().isoformat()  # Jamaica, the reporting zone
    assert meta.run(*HIERARCHY, ADS_INSIGHTS, days=(today, today), checks=False).success

    for name, value in demo_environment(sandbox.base_url, CONFIG.breezeway.regions).items():
        monkeypatch.setenv(name, value)
    assets = build_assets(CONFIG)
    job = dg.Definitions(assets=assets, jobs=[dg.define_asset_job("load", selection=dg.AssetSelection.assets(*assets))],
                         resources={"breezeway": BreezewayResource(), "warehouse": WarehouseResource(url=warehouse_url)}
                         ).resolve_job_def("load")
    ops = {f"breezeway__{e}": {"config": {"mode": "full"}} for e in ("reservations", "tasks")}
    assert job.execute_in_process(partition_key=REGION, run_config={"ops": ops}, raise_on_error=False).success
    return now


def expectations() -> dict[str, callable]:
    """What a healthy pipeline shows, per runbook query (keyed by a fragment of its SQL)."""
    def rows_are(expected):
        return lambda cols, rows: rows == expected

    return {
        # morning check: no failed or running syncs; the stuck-sync query finds none
        "sync_status IN ('failed', 'running')": rows_are([]),
        "sync_status = 'running'": rows_are([]),
        # record counts: all three entities landed
        "'properties' as entity": lambda cols, rows: [r[0] for r in rows] == ["properties", "reservations", "tasks"]
        and all(r[1] > 0 for r in rows),
        # weekly performance: one row per entity of the loaded region
        "AVG(api_calls_made)": lambda cols, rows: {(r[0], r[1]) for r in rows} == {(REGION, e) for e in ENTITIES}
        and all(r[2] > 0 and r[4] >= 1 for r in rows),
        # Breezeway token: the region's 24 h JWT, refreshed by the pipeline
        "FROM breezeway.api_tokens\nORDER BY": lambda cols, rows: [r[0] for r in rows] == [REGION]
        and 0 <= rows[0][3] <= 24,
        f"FROM breezeway.api_tokens\nWHERE region_code = '{REGION}'": lambda cols, rows: len(rows) == 1
        and rows[0][1] is not None and rows[0][2] is None,
        "FROM breezeway.properties\nWHERE region_code": lambda cols, rows: rows[0][0] > 0,
        "duration_seconds": lambda cols, rows: 1 <= len(rows) <= 10 and all(r[4] >= 0 for r in rows),
        "ORDER BY last_successful_sync_at DESC\nLIMIT 1": lambda cols, rows: len(rows) == 1 and rows[0][2] is not None,
        # overall health: every entity, the one region, synced within the hour, no failures
        "hours_since_last": lambda cols, rows: [r[0] for r in rows] == sorted(ENTITIES)
        and all(r[1] == 1 and r[3] == 0 and r[4] == 0 for r in rows),
        # escalation export: the day's attempts, with the runbook's columns
        "COPY (": lambda cols, rows: len(rows) >= len(ENTITIES)
        and {"region_code", "entity_type", "sync_status", "sync_started_at", "sync_completed_at",
             "error_message", "last_successful_sync_at"} <= set(cols),
        # Meta guide: tokens (Breezeway's auto-refreshed JWT is HEALTHY, not EXPIRING_SOON), recent syncs
        TOKEN_STATUS_QUERY: lambda cols, rows: rows and all(r[1] == "HEALTHY" for r in rows if r[0] != "meta"),
        "FROM marketing.platform_tokens;": lambda cols, rows: {r[0] for r in rows} == {"meta", "breezeway"},
        "LIMIT 20": lambda cols, rows: rows and {r[0] for r in rows} == {"meta"}
        and {"ad_accounts", "ads_insights"} <= {r[1] for r in rows},
        "WHERE status = 'failed'": rows_are([]),
    }


def test_every_runbook_select_runs_verbatim_and_shows_a_healthy_load(loaded, conn):
    found = statements()
    assert found, f"no runbook SQL found under {runbooks_dir()}"
    ours = [s for s in found if s.database not in OTHER_APPLICATIONS]
    assert {s.runbook for s in found if s.database in OTHER_APPLICATIONS} <= {"insta-connect-runbooks.md"}
    assert len(ours) >= 18  # 14 in the Breezeway runbook, 4 in the Meta guide (as of 2025-12)
    checks, used, failures = expectations(), set(), []
    for statement in ours:
        for sql in expand(statement):
            try:
                cols, rows = run(conn, sql)
            except psycopg.Error as exc:
                conn.rollback()
                failures.append(f"{statement.label}: {type(exc).__name__}: {exc}\n{sql}")
                continue
            assert cols and all(cols), statement.label
            for fragment, ok in checks.items():
                if fragment in sql:
                    used.add(fragment)
                    if not ok(cols, rows):
                        failures.append(f"{statement.label}: unexpected result for a healthy load: {cols} {rows[:8]}")
    assert not failures, "\n\n".join(failures)
    assert used == set(checks), f"expectations matching no runbook query: {set(checks) - used}"


def token(platform: str, scope: str, *, status: str = "valid", expires: timedelta | None = None,
          data_access: timedelta | None = None, never_expires: bool = False) -> dict:
    return {"platform": platform, "scope": scope, "status": status, "expires": expires, "data_access": data_access,
            "never_expires": never_expires}


TOKENS = [  # every kind of token state, against `adpipeline tokens status`
    token("breezeway", "nashville", expires=timedelta(hours=24)),  # the 24 h JWT the runbook called EXPIRING_SOON
    token("breezeway", "nashville", expires=timedelta(hours=3), status="refresh_failed"),
    token("breezeway", "nashville", expires=timedelta(hours=-2), status="expired"),
    token("breezeway", "nashville", expires=timedelta(minutes=20), status="invalid"),
    token("ga4", "default", expires=timedelta(hours=1)),
    token("meta", "default", expires=timedelta(days=30), data_access=timedelta(days=80)),
    token("meta", "default", expires=timedelta(days=10), data_access=timedelta(days=80)),
    token("meta", "default", expires=timedelta(days=3), data_access=timedelta(days=80)),
    token("meta", "default", expires=timedelta(hours=-1)),
    token("meta", "default", expires=timedelta(days=30), status="refresh_failed"),
    token("meta", "default", expires=timedelta(days=30), status="invalid"),
    token("meta", "default", never_expires=True, data_access=timedelta(days=5)),
    token("meta", "default", never_expires=True, data_access=timedelta(days=-1)),
    token("meta", "default", never_expires=True),
]


@pytest.mark.parametrize("case", TOKENS, ids=lambda c: f"{c['platform']}-{c['status']}-{c['expires']}-{c['data_access']}")
def test_the_guides_token_status_query_agrees_with_tokens_status(case, conn):
    (query,) = [s.sql for s in statements() if TOKEN_STATUS_QUERY in s.sql]
    now: datetime = conn.execute("SELECT now()").fetchone()[0]
    at = lambda delta: None if delta is None else now + delta  # noqa: E731
    conn.execute("DELETE FROM ops.platform_tokens")
    conn.execute("INSERT INTO ops.platform_tokens (platform, scope, status, expires_at, data_access_expires_at,"
                 " never_expires, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                 (case["platform"], case["scope"], case["status"], at(case["expires"]), at(case["data_access"]),
                  case["never_expires"], now - timedelta(minutes=5)))
    conn.commit()
    try:
        (row,) = conn.execute(query).fetchall()
        (expected,) = token_rows(now)  # what `adpipeline tokens status` prints
        assert (row[0], row[1]) == (case["platform"], expected["health"]), expected["detail"]
    finally:
        conn.rollback()
        conn.execute("DELETE FROM ops.platform_tokens")
        conn.commit()


def test_a_partial_sync_is_a_failure_to_the_runbooks_queries(loaded, conn):
    """A `partial` sync (the scope committed, some of its children failed) is what the runbooks call failed: their
    own failure queries list it, and the views say it was partial."""
    conn.execute("INSERT INTO ops.etl_sync_log (source, scope, entity, sync_type, status, started_at, finished_at,"
                 " records_processed, error) VALUES ('breezeway', %s, 'tasks', 'full', 'partial', now(), now(), 10,"
                 " 'tasks of 2 of 40 properties failed'), ('meta', 'act_1', 'ads_insights', 'restatement', 'partial',"
                 " now(), now(), 5, 'partial')", (REGION,))
    try:
        queries = [sql for s in statements() for sql in expand(s)]
        [daily] = [q for q in queries if "sync_status IN ('failed', 'running')" in q]
        assert (REGION, "tasks", "failed") in [tuple(r[:3]) for r in run(conn, daily)[1]]
        [meta_failures] = [q for q in queries if "WHERE status = 'failed'" in q and "marketing.etl_sync_log" in q]
        assert [r[:3] for r in run(conn, meta_failures)[1]] == [("meta", "ads_insights", 1)]
        assert conn.execute("SELECT sync_status, error_message FROM breezeway.etl_sync_log WHERE partial").fetchall() \
            == [("failed", "tasks of 2 of 40 properties failed")]
    finally:
        conn.rollback()
