"""The Meta assets and checks, materialized with Dagster against the emulation and the real warehouse."""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import dagster as dg
import psycopg
import pytest
import requests

from adpipeline.clock import CLOCK_URL_ENV
from adpipeline.config import get_config
from adpipeline.sandbox.meta import DEMO_ACCESS_TOKEN
from adpipeline.sandbox.process import SandboxProcess
from adpipeline.sources.meta import tables
from adpipeline.sources.meta.assets import ACCOUNT_INSIGHTS, AD_ACCOUNTS, ADS, ADS_INSIGHTS, ADSETS, CAMPAIGNS
from adpipeline.sources.meta.definitions import build_defs
from adpipeline.sources.meta.partitions import hourly_range, range_tags, restatement_range
from adpipeline.sources.meta.resources import MetaResource
from adpipeline.warehouse.resource import WarehouseResource

JAMAICA, DENVER, LONDON = "act_100000000000001", "act_100000000000002", "act_100000000000003"
ACCOUNTS = (JAMAICA, DENVER, LONDON)
HIERARCHY = [AD_ACCOUNTS, CAMPAIGNS, ADSETS, ADS]
MEASURES = ["spend", "impressions", "clicks", "reach", "conversions", "purchase_value",
            *(f"{m}_{w}" for m in ("conversions", "purchase_value") for w in ("1d_click", "7d_click", "28d_click", "1d_view"))]


class Meta:
    """The Meta slice wired to the session sandbox and warehouse; materializes and inspects."""

    def __init__(self, sandbox: SandboxProcess, warehouse_url: str) -> None:
        self.sandbox = sandbox
        self.url = warehouse_url
        self.instance = dg.DagsterInstance.ephemeral()  # keeps what a failed step recorded (scopes.py)
        self.defs = build_defs()  # its checks' clock is the pipeline's, which follows the sandbox's
        self.resources = {
            "warehouse": WarehouseResource(url=warehouse_url),
            "meta": MetaResource(graph_url=f"{sandbox.base_url}/meta/v24.0", retry_base_delay=0.01),
        }

    def run(self, *keys: dg.AssetKey, days: tuple[str, str] | dg.PartitionKeyRange | None = None,
            checks: bool = True, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
        # meta/ads_insights and meta/account_insights load in one transaction per scope: always together
        selection = dg.AssetSelection.assets(*keys).required_multi_asset_neighbors()
        if not checks:
            selection = selection.without_checks()
        tags = None
        if days is not None:
            span = days if isinstance(days, dg.PartitionKeyRange) else dg.PartitionKeyRange(*days)
            tags = range_tags(span)
        return dg.materialize([*self.defs.assets, *self.defs.asset_checks], resources=self.resources,
                              selection=selection, tags=tags, raise_on_error=False, run_config=run_config,
                              instance=self.instance)

    def recorded(self, result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> list[dg.AssetMaterialization]:
        """The run's materializations of `key` as stored, those a failed step recorded included."""
        records = self.instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        return [m for m in (r.event_log_entry.asset_materialization for r in records.records) if m.asset_key == key]

    def failure(self, result: dg.ExecuteInProcessResult, step: str) -> str:
        return next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE" and e.step_key == step
                    ).step_failure_data.user_failure_data.description

    def check(self, *names: str, key: dg.AssetKey = ADS_INSIGHTS) -> dict[str, dg.AssetCheckEvaluation]:
        selection = dg.AssetSelection.checks(*(dg.AssetCheckKey(key, n) for n in names))
        result = dg.materialize([*self.defs.assets, *self.defs.asset_checks], resources=self.resources,
                                selection=selection, raise_on_error=False)
        return {e.check_name: e for e in result.get_asset_check_evaluations()}

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(sql, params).fetchall()

    def script(self, **changes: Any) -> None:
        assert requests.post(f"{self.sandbox.base_url}/_admin/meta/script", json=changes, timeout=10).ok

    def truth(self, account: str, since: str, until: str) -> list[dict]:
        return requests.get(f"{self.sandbox.base_url}/_admin/meta/insights", timeout=30, params={
            "account_id": account, "since": since, "until": until}).json()["data"]

    def entities(self, account: str, kind: str) -> list[dict]:
        return requests.get(f"{self.sandbox.base_url}/_admin/meta/entities", timeout=30,
                            params={"account_id": account, "kind": kind}).json()["data"]


@pytest.fixture
def meta(sandbox, warehouse_url, monkeypatch) -> Iterator[Meta]:
    monkeypatch.setenv("META_ACCESS_TOKEN", DEMO_ACCESS_TOKEN)
    monkeypatch.setenv("META_GRAPH_URL", f"{sandbox.base_url}/meta/v24.0")  # the token checks judge this API's token
    with psycopg.connect(warehouse_url) as conn:  # each test starts from an empty Meta landing zone
        conn.execute("TRUNCATE " + ", ".join(t.qualified for t in tables.ALL))
        conn.execute("DELETE FROM ops.etl_sync_log WHERE source = 'meta'")
        conn.execute("DELETE FROM ops.platform_tokens WHERE platform = 'meta'")
    yield Meta(sandbox, warehouse_url)


def materializations(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> list[dg.AssetMaterialization]:
    return [e.materialization for e in result.get_asset_materialization_events() if e.asset_key == key]


def metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, Any]:
    return {k: v.value for k, v in materializations(result, key)[-1].metadata.items()}


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e for e in result.get_asset_check_evaluations()}


def table_rows(meta: Meta, since: str, until: str) -> dict[tuple[str, str, str], tuple]:
    rows = meta.rows(f"SELECT account_id, date::text, ad_id, {', '.join(MEASURES)} FROM raw_meta.ads_insights"
                     " WHERE date BETWEEN %s AND %s", since, until)
    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}


def expected_rows(meta: Meta, since: str, until: str) -> dict[tuple[str, str, str], tuple]:
    """The emulation's truth, parsed independently of the client (numbers as Meta sends them)."""
    out = {}
    for account in ACCOUNTS:
        for row in meta.truth(account, since, until):
            purchase = next((a for a in row.get("actions", []) if a["action_type"] == "purchase"), {})
            value = next((a for a in row.get("action_values", []) if a["action_type"] == "purchase"), {})
            windows = ("1d_click", "7d_click", "28d_click", "1d_view")
            out[(account, row["date_start"], row["ad_id"])] = (
                Decimal(row["spend"]), int(row["impressions"]), int(row["clicks"]), int(row["reach"]),
                Decimal(purchase.get("value", 0)), Decimal(value.get("value", 0)),
                *(Decimal(purchase.get(w, 0)) for w in windows), *(Decimal(value.get(w, 0)) for w in windows))
    return out


def test_migration_creates_the_tables_the_loader_writes(meta):
    for table in tables.ALL:
        columns = meta.rows("SELECT column_name, data_type FROM information_schema.columns"
                            " WHERE table_schema = %s AND table_name = %s", table.schema, table.name)
        assert {c for c, _ in columns} == {*table.columns, "payload", "loaded_at"}, table.qualified
        key = meta.rows("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND"
                        " a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary", table.qualified)
        assert {k for (k,) in key} == set(table.key)


def test_hierarchy_is_incremental_and_keeps_deleted_objects_with_their_status(meta):
    meta.sandbox.admin.set_clock("2026-11-01T12:00:00Z")
    first = meta.run(*HIERARCHY)
    assert first.success
    assert metadata(first, AD_ACCOUNTS)["visible_not_configured"] == ["act_100000000000004"]
    total_ads = metadata(first, ADS)["rows_inserted"]

    meta.sandbox.admin.set_clock("2026-11-23T12:00:00Z")
    meta.sandbox.admin.reset_requests()
    second = meta.run(*HIERARCHY)
    assert second.success
    changed = metadata(second, ADS)
    assert 0 < changed["rows_processed"] < total_ads  # only what was updated since the last load
    queries = [e["query"] for e in meta.sandbox.admin.requests()["recent"] if e["path"].endswith("/ads")]
    assert queries and all("ad.updated_time" in requests.utils.unquote(q) for q in queries)

    for kind, table in (("campaign", "campaigns"), ("adset", "adsets"), ("ad", "ads")):
        expected = {(e["id"], e["effective_status"], e["updated_time"]) for a in ACCOUNTS for e in meta.entities(a, kind)}
        stored = meta.rows(f"SELECT id, effective_status, updated_time, payload->>'updated_time' FROM raw_meta.{table}")
        assert {(i, s, raw) for i, s, _, raw in stored} == expected, table
    statuses = {s for (s,) in meta.rows("SELECT DISTINCT status FROM raw_meta.ads")}
    assert {"ACTIVE", "DELETED"} <= statuses

    full = meta.run(ADS, run_config={"ops": {"meta__ads": {"config": {"full_refresh": True}}}})
    assert full.success and metadata(full, ADS)["rows_processed"] == len(meta.rows("SELECT id FROM raw_meta.ads"))
    synced = meta.rows("SELECT sync_type, count(*) FROM ops.etl_sync_log WHERE entity = 'ads' GROUP BY 1")
    assert dict(synced) == {"incremental": 6, "full": 3}


def test_a_28_day_restatement_converges_to_the_emulations_truth(meta):
    # first pull shortly after the days happened, then the daily restatement two weeks later
    meta.sandbox.admin.set_clock("2026-11-08T17:00:00Z")
    early = meta.run(ADS_INSIGHTS, days=("2026-11-01", "2026-11-08"), checks=False)
    assert early.success
    before = table_rows(meta, "2026-11-01", "2026-11-07")
    assert before == expected_rows(meta, "2026-11-01", "2026-11-07")

    now = meta.sandbox.admin.set_clock("2026-11-23T07:15:00Z")  # 02:15 in Jamaica: the restatement run
    window = restatement_range(now, "America/Jamaica", 28)
    assert (window.start, window.end) == ("2026-10-26", "2026-11-22")
    late = meta.run(ADS_INSIGHTS, days=window)
    assert late.success
    after = table_rows(meta, "2026-10-26", "2026-11-22")
    assert after == expected_rows(meta, "2026-10-26", "2026-11-22")
    vanished = set(before) - set(after)
    assert vanished  # rows Meta dropped after the first pull are gone from the warehouse too
    grown = sum(after[k][MEASURES.index("conversions_28d_click")] for k in before if k in after)
    assert grown > sum(before[k][MEASURES.index("conversions_28d_click")] for k in before if k in after)
    # every restated day got its own materialization, both assets, in one run
    assert len(materializations(late, ADS_INSIGHTS)) == len(materializations(late, ACCOUNT_INSIGHTS)) == 28
    assert metadata(late, ADS_INSIGHTS)["rows_deleted"] == len(vanished)
    kinds = dict(meta.rows("SELECT sync_type, count(*) FROM ops.etl_sync_log WHERE entity = 'ads_insights'"
                           " AND window_start >= '2026-10-26'"
                           " AND dagster_run_id = %s GROUP BY 1", late.run_id))
    assert kinds == {"restatement": 27 * 3, "incremental": 3}  # yesterday is also in the hourly window


def test_a_range_is_fetched_per_account_window_and_logged_per_account_day(meta):
    meta.sandbox.admin.set_clock("2026-11-23T15:00:00Z")
    meta.sandbox.admin.reset_requests()
    result = meta.run(ADS_INSIGHTS, days=("2026-11-09", "2026-11-22"), checks=False)  # 14 days: two 7-day windows
    assert result.success
    asked: dict[str, list[tuple[str, str]]] = {}  # account -> (level, time_range) of each first page asked
    for entry in meta.sandbox.admin.requests()["recent"]:
        query = parse_qs(entry["query"])
        if entry["path"].endswith("/insights") and "after" not in query:
            asked.setdefault(entry["path"].split("/")[-2], []).append((query["level"][0], query["time_range"][0]))
    windows = [json.dumps({"since": a, "until": b}) for a, b in (("2026-11-09", "2026-11-15"), ("2026-11-16", "2026-11-22"))]
    for account in ACCOUNTS:  # each window once at each level, not two calls per day
        assert sorted(asked[account]) == sorted((level, w) for level in ("account", "ad") for w in windows)
    logged = meta.rows("SELECT scope, window_start::text, window_end::text, records_processed FROM ops.etl_sync_log"
                       " WHERE entity = 'ads_insights' AND status = 'success' ORDER BY 1, 2")
    per_day = dict(((a, d), n) for a, d, n in meta.rows(
        "SELECT account_id, date::text, count(*) FROM raw_meta.ads_insights GROUP BY 1, 2"))
    assert [(a, d) for a, d, _, _ in logged] == sorted(per_day) and len(logged) == 3 * 14
    assert all(start == end and n == per_day[(a, start)] for a, start, end, n in logged)
    assert len(materializations(result, ADS_INSIGHTS)) == 14


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                       "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mallinfo() -> _MallInfo2:
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = _MallInfo2
    return mallinfo2()


def _mmapped_bytes() -> int:
    return _mallinfo().hblkhd


@pytest.mark.skipif(not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"), reason="glibc's malloc only")
def test_after_the_insights_step_a_large_block_is_mapped_on_its_own_so_freeing_it_returns_it(meta):
    # a freed 8 MiB block makes glibc raise its mmap threshold to 8 MiB: from then on page-sized bodies
    # would come from (and their space stay in) the heaps, as 1M insights rows did (+200 MB of free heap)
    bytes(8 << 20)  # allocated and freed at once
    meta.sandbox.admin.set_clock("2026-11-23T15:00:00Z")
    assert meta.run(ADS_INSIGHTS, days=("2026-11-22", "2026-11-22"), checks=False).success
    before = _mmapped_bytes()
    block = bytes(4 << 20)
    assert _mmapped_bytes() - before >= len(block)
    # and a heap keeps little free space at its top: 6 MB of 100 KiB blocks (heap-served) freed are trimmed away
    # (the 8 MiB free had raised the trim threshold to 16 MiB: all 6 MB would stay)
    blocks = [bytes(100 << 10) for _ in range(60)]
    del blocks
    assert _mallinfo().keepcost < 1 << 20


def test_hourly_run_pulls_yesterday_and_today_without_asking_any_account_for_its_future(meta):
    # 00:30 in Jamaica on the 24th: London is on the 24th too, Denver still on the 23rd
    now = meta.sandbox.admin.set_clock("2026-11-24T05:30:00Z")
    window = hourly_range(now, "America/Jamaica")
    assert (window.start, window.end) == ("2026-11-23", "2026-11-24")
    result = meta.run(ADS_INSIGHTS, days=window, checks=False)
    assert result.success
    assert metadata(result, ADS_INSIGHTS)["not_started_yet"] == [f"{DENVER} 2026-11-24"]
    loaded = dict(((a, str(d)), n) for a, d, n in meta.rows(
        "SELECT account_id, date, count(*) FROM raw_meta.ads_insights GROUP BY 1, 2"))
    assert set(loaded) == {(JAMAICA, "2026-11-23"), (JAMAICA, "2026-11-24"), (LONDON, "2026-11-23"),
                           (LONDON, "2026-11-24"), (DENVER, "2026-11-23")}
    assert all(e["status"] == 200 for e in meta.sandbox.admin.requests()["recent"] if "/insights" in e["path"])
    kinds = dict(meta.rows("SELECT sync_type, count(*) FROM ops.etl_sync_log WHERE entity = 'ads_insights' GROUP BY 1"))
    assert kinds == {"incremental": 5}


def test_one_forbidden_and_one_throttled_account_do_not_stop_the_third(meta):
    meta.sandbox.admin.set_clock("2026-11-23T15:00:00Z")
    meta.script(forbidden_accounts=[DENVER])
    meta.sandbox.admin.add_faults([{"path": f"/meta/v24.0/{LONDON}/insights", "status": 400, "count": None,
                                    "headers": {"X-Business-Use-Case-Usage": '{"100000000000003": [{"type": '
                                                '"ads_insights", "call_count": 100, "estimated_time_to_regain_access": 90}]}'},
                                    "body": {"error": {"code": 80000, "error_subcode": 2446079, "type": "OAuthException",
                                                       "message": "(#80000) There have been too many calls from this ad-account."}}}])
    result = meta.run(AD_ACCOUNTS, ADS_INSIGHTS, days=("2026-11-20", "2026-11-22"))
    # the steps fail naming the failed scopes and the action: the run is red and run-failure alerts fire...
    assert not result.success
    message = meta.failure(result, "meta_insights")
    assert message.startswith("meta/ads_insights: 6 of 9 scope(s) failed (3 committed and recorded): ")
    assert f"{DENVER} 2026-11-20: " in message and f"{LONDON} 2026-11-22: " in message and "Action: " in message
    assert meta.failure(result, "meta__ad_accounts").startswith("meta/ad_accounts: 1 of 3 scope(s) failed")
    # ...while the healthy account's days committed and are recorded as materialized, in the shared shape
    recorded = meta.recorded(result, ADS_INSIGHTS)
    assert sorted(m.partition for m in recorded) == ["2026-11-20", "2026-11-21", "2026-11-22"]
    assert {m.partition for m in meta.recorded(result, ACCOUNT_INSIGHTS)} == {"2026-11-20", "2026-11-21", "2026-11-22"}
    info = {k: v.value for k, v in recorded[-1].metadata.items()}
    assert info["scopes_loaded"] == 3 and info["partial_scopes"] == []
    assert info["failed_scopes"] == [f"{a} 2026-11-{d}" for a in (DENVER, LONDON) for d in (20, 21, 22)]
    assert "permission denied" in info["errors"][f"{DENVER} 2026-11-20"]
    assert "rate limited" in info["errors"][f"{LONDON} 2026-11-20"]
    # the three days are one time_range, one call: they fail together, each with its own sync-log row
    assert all("permission denied" in info["errors"][f"{DENVER} 2026-11-{d}"] for d in (21, 22))
    [accounts] = meta.recorded(result, AD_ACCOUNTS)
    assert accounts.metadata["failed_scopes"].value == [DENVER]
    statuses = meta.rows("SELECT scope, window_start::text, status FROM ops.etl_sync_log WHERE entity = 'ads_insights'")
    assert sorted(statuses) == sorted([*((JAMAICA, f"2026-11-{d}", "success") for d in (20, 21, 22)),
                                       *((DENVER, f"2026-11-{d}", "failed") for d in (20, 21, 22)),
                                       *((LONDON, f"2026-11-{d}", "failed") for d in (20, 21, 22))])
    logged = " ".join(str(e.message) for e in result.all_events) + repr(info) + message
    assert "access_token=***" in repr(info) and DEMO_ACCESS_TOKEN not in logged  # errors name URLs, never the token
    assert {a for (a,) in meta.rows("SELECT DISTINCT account_id FROM raw_meta.ads_insights")} == {JAMAICA}
    # one call each for the failing accounts' insights: no retry storm against a limit that lasts 90 minutes
    calls = meta.sandbox.admin.requests()["by_path"]
    assert calls[f"GET /meta/v24.0/{LONDON}/insights"] == 1 and calls[f"GET /meta/v24.0/{DENVER}/insights"] == 1
    scopes_check = meta.check("all_scopes_loaded")["all_scopes_loaded"]  # the checks job's verdict
    assert not scopes_check.passed and scopes_check.severity == dg.AssetCheckSeverity.ERROR
    assert DENVER in scopes_check.description and LONDON in scopes_check.description
    assert not meta.check("all_scopes_loaded", key=AD_ACCOUNTS)["all_scopes_loaded"].passed

    meta.script(forbidden_accounts=[])
    meta.sandbox.admin.clear_faults()
    recovered = meta.run(AD_ACCOUNTS, ADS_INSIGHTS, days=("2026-11-20", "2026-11-22"))
    assert recovered.success and metadata(recovered, ADS_INSIGHTS)["failed_scopes"] == []
    assert all(e.passed for name, e in evaluations(recovered).items() if name.endswith("all_scopes_loaded"))


def test_the_windows_of_an_account_blocked_earlier_in_the_run_are_not_asked_and_their_days_say_so(meta):
    meta.sandbox.admin.set_clock("2026-11-23T15:00:00Z")
    meta.script(forbidden_accounts=[DENVER])
    meta.sandbox.admin.reset_requests()
    # five days in windows of two, one window of an account at a time: Denver's first window meets the 403
    meta.resources = {**meta.resources, "meta": MetaResource(graph_url=meta.resources["meta"].graph_url,
                                                             retry_base_delay=0.01, window_days=2,
                                                             concurrency_per_account=1)}
    result = meta.run(ADS_INSIGHTS, days=("2026-11-18", "2026-11-22"), checks=False)
    assert not result.success
    assert meta.sandbox.admin.requests()["by_path"][f"GET /meta/v24.0/{DENVER}/insights"] == 1  # not asked again
    rows = dict(meta.rows("SELECT window_start::text, status || ': ' || error FROM ops.etl_sync_log"
                          " WHERE entity = 'ads_insights' AND scope = %s", DENVER))
    assert sorted(rows) == [f"2026-11-{d}" for d in range(18, 23)]  # every day of the range has its row
    assert all("permission denied" in rows[f"2026-11-{d}"] for d in (18, 19)), rows
    for day in (20, 21, 22):  # the later windows: failed, saying they were not attempted and why
        assert rows[f"2026-11-{day}"].startswith(f"failed: NotAttempted: not attempted: {DENVER} failed earlier in"
                                                 " this run"), rows
        assert "permission denied" in rows[f"2026-11-{day}"]
    errors = meta.recorded(result, ADS_INSIGHTS)[-1].metadata["errors"].value  # the healthy accounts committed
    assert sorted(k for k in errors if k.startswith(DENVER)) == [f"{DENVER} 2026-11-{d}" for d in range(18, 23)]


def test_a_failed_older_day_is_not_masked_by_a_later_success(meta):
    meta.sandbox.admin.set_clock("2026-11-23T15:00:00Z")
    meta.script(forbidden_accounts=[DENVER])
    assert not meta.run(ADS_INSIGHTS, days=("2026-11-20", "2026-11-22"), checks=False).success  # Denver's 3 days failed
    meta.script(forbidden_accounts=[])
    assert meta.run(ADS_INSIGHTS, days=("2026-11-22", "2026-11-22"), checks=False).success  # only the 22nd again
    checks = meta.check("all_scopes_loaded", "completeness")
    scopes = checks["all_scopes_loaded"]
    assert not scopes.passed and scopes.severity == dg.AssetCheckSeverity.ERROR  # Denver's newest load succeeded...
    assert scopes.metadata["failed_scopes"].value == [DENVER]
    error = scopes.metadata["errors"].value[DENVER]  # ...but its 20th and 21st failed (one window, one call)
    assert error.startswith("failed days 2026-11-20, 2026-11-21: ") and "permission denied" in error
    completeness = checks["completeness"]  # which sees every failed day too
    assert not completeness.passed and f"{DENVER} 2026-11-21" in completeness.metadata["incomplete_account_days"].value
    assert meta.run(ADS_INSIGHTS, days=("2026-11-20", "2026-11-21"), checks=False).success  # the operator's rerun
    assert meta.check("all_scopes_loaded")["all_scopes_loaded"].passed


def test_checks_catch_a_dropped_day_and_skewed_spend(meta):
    meta.sandbox.admin.set_clock("2026-11-23T15:00:00Z")
    assert meta.run(*HIERARCHY, checks=False).success
    loaded = meta.run(ADS_INSIGHTS, days=("2026-11-16", "2026-11-22"))
    assert loaded.success
    healthy = evaluations(loaded)
    assert all(e.passed for e in healthy.values()), {k: e.description for k, e in healthy.items() if not e.passed}
    assert "21 account-days complete" in healthy["meta/ads_insights:completeness"].description
    assert healthy["meta/ads_insights:lateness"].metadata["lateness_hours"].value < 1  # loaded at 10:00, due 10:00
    # the lateness check reads the pipeline's clock: five hours on (15:00 in Jamaica, 06-22 hourly), it is late
    meta.sandbox.admin.advance(5 * 3600)
    stale = meta.check("lateness")["lateness"]
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.ERROR, stale.description
    meta.sandbox.admin.set_clock("2026-11-23T15:00:00Z")

    meta.script(drop=[{"account_id": DENVER, "date": "2026-11-18"}],
                skew=[{"account_id": LONDON, "date": "2026-11-19", "factor": 1.05}])
    scripted = meta.run(ADS_INSIGHTS, days=("2026-11-18", "2026-11-19"))
    assert not scripted.success  # the reconciliation check blocks: marts must not get wrong money
    checks = evaluations(scripted)
    completeness, reconciliation = checks["meta/ads_insights:completeness"], checks["meta/ads_insights:spend_reconciles"]
    assert not completeness.passed and completeness.severity == dg.AssetCheckSeverity.ERROR
    assert f"{DENVER} 2026-11-18" in completeness.description and "no ad rows" in completeness.description
    problems = completeness.metadata["incomplete_account_days"].value
    assert list(problems) == [f"{DENVER} 2026-11-18"]
    assert not reconciliation.passed and reconciliation.severity == dg.AssetCheckSeverity.ERROR
    assert set(reconciliation.metadata["mismatched"].value) == {f"{DENVER} 2026-11-18", f"{LONDON} 2026-11-19"}
    assert checks["meta/ads_insights:spend_non_negative"].passed and checks["meta/ads_insights:all_scopes_loaded"].passed

    # rows deleted behind the pipeline's back: the tables no longer match what the sync log says was loaded
    meta.script(drop=[], skew=[])
    assert meta.run(ADS_INSIGHTS, days=("2026-11-18", "2026-11-19"), checks=False).success
    with psycopg.connect(meta.url) as conn:
        conn.execute("DELETE FROM raw_meta.ads_insights WHERE ctid IN (SELECT ctid FROM raw_meta.ads_insights"
                     " WHERE account_id = %s AND date = '2026-11-17' LIMIT 1)", (JAMAICA,))
    after = meta.check("completeness", "spend_reconciles", "ads_known")
    assert not after["completeness"].passed and "sync log says" in after["completeness"].description
    assert after["ads_known"].passed

    # an ad that meta/ads has not seen yet is only a warning
    with psycopg.connect(meta.url) as conn:
        conn.execute("DELETE FROM raw_meta.ads WHERE id = (SELECT min(ad_id) FROM raw_meta.ads_insights)")
    known = meta.check("ads_known")["ads_known"]
    assert not known.passed and known.severity == dg.AssetCheckSeverity.WARN


def test_an_expired_token_fails_fast_with_the_recovery_step(meta, monkeypatch):
    expired = "EAAExpiredSandboxToken0000000000002"
    requests.post(f"{meta.sandbox.base_url}/_admin/meta/tokens", json={
        "access_token": expired, "expires_at": "2026-11-01T00:00:00Z"}, timeout=10)
    monkeypatch.setenv("META_ACCESS_TOKEN", expired)
    # the default fetch: three accounts' windows in parallel, and still the dead token is sent once (the first
    # call goes alone; the calls waiting for their turn see the refusal and are not sent)
    assert MetaResource().concurrency > 1
    result = meta.run(ADS_INSIGHTS, days=("2026-11-20", "2026-11-22"), checks=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message
    assert "Meta token expired: manual re-authentication required" in message and "Session has expired" in message
    assert "adpipeline tokens exchange meta" in message
    assert expired not in str(failure.step_failure_data.error.to_string())
    assert meta.sandbox.admin.count() == 1  # one call, not a retry storm


def test_definitions_carry_the_conventions_and_load_without_the_environment(monkeypatch):
    for name in ("META_ACCESS_TOKEN", "META_GRAPH_URL"):
        monkeypatch.delenv(name, raising=False)
    # nothing may be reached while the definitions load: no clock, no database, no API
    monkeypatch.setenv(CLOCK_URL_ENV, "http://127.0.0.1:9/never")
    monkeypatch.setenv("ADPIPELINE_WAREHOUSE_URL", "postgresql://nobody@127.0.0.1:9/never")
    defs = build_defs(get_config())
    specs = {s.key: s for a in defs.assets for s in a.specs}
    assert set(specs) == {AD_ACCOUNTS, CAMPAIGNS, ADSETS, ADS, ADS_INSIGHTS, ACCOUNT_INSIGHTS,
                          dg.AssetKey(["meta", "access_token"])}  # the token lifecycle (tests/test_meta_tokens.py)
    assert all(s.group_name == "meta" and s.description and s.code_version and "meta" in s.kinds for s in specs.values())
    insights = next(a for a in defs.assets if ADS_INSIGHTS in a.keys)
    assert insights.partitions_def.timezone == "America/Jamaica"
    assert insights.backfill_policy == dg.BackfillPolicy.single_run()
    blocking = {c.key.name for a in defs.asset_checks for c in a.check_specs if c.blocking}
    assert blocking == {"spend_reconciles", "spend_non_negative"}
