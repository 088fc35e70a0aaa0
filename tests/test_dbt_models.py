"""The dbt models on a real warehouse: hand-made raw rows in, marts compared with independent computations.

The project is built ONCE per session (`dbt build`, all models and tests) on a database of its own on the
session's Postgres server (migrated like the warehouse), so other tests' raw rows cannot change these
numbers and these rows cannot change theirs. The Dagster tests (a failing test blocks its downstream
model; a date-range backfill rebuilds only those days) use an ad account of their own and remove it again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from adpipeline.config import get_config
from adpipeline.sources.meta.partitions import range_tags
from adpipeline.transform.assets import build_dbt_assets
from adpipeline.transform.invocation import prepare_manifest
from adpipeline.transform.project import DBT_PROJECT_DIR, ensure_manifest
from adpipeline.transform.resources import dbt_environment, dbt_resource, environment
from adpipeline.transform.source_freshness import build_source_freshness_checks
from adpipeline.warehouse import db
from adpipeline.warehouse.resource import WarehouseResource

DBT_DATABASE = "dbt_tests"
USD_ACCOUNT, GBP_ACCOUNT = "act_900000000000001", "act_900000000000002"
DAYS = [date(2026, 2, 1) + timedelta(days=i) for i in range(5)]
FIXTURE_DAY = date(2026, 2, 2)
# (ad, adset, campaign, account, currency)
ADS = [
    ("a101", "s11", "c11", USD_ACCOUNT, "USD"),
    ("a102", "s11", "c11", USD_ACCOUNT, "USD"),
    ("a103", "s12", "c12", USD_ACCOUNT, "USD"),
    ("a201", "s21", "c21", GBP_ACCOUNT, "GBP"),  # its hierarchy is not loaded: a WARN relationship test only
]
# The hand-made day: a101 and a102 (campaign c11) with round numbers; a102 spent nothing.
HAND_MADE = {
    "a101": {"spend": "50.00", "impressions": 10000, "clicks": 200, "reach": 8000, "conversions": "4", "purchase_value": "300.00"},
    "a102": {"spend": "0", "impressions": 100, "clicks": 0, "reach": 90, "conversions": "1", "purchase_value": "20.00"},
}
GA4_PROPERTY = "390000001"
REGION = "dbtville"  # America/Chicago


def _measures(day: date, index: int) -> dict:
    n = (day - DAYS[0]).days
    return {"spend": Decimal(10 + 3 * n + 7 * index) + Decimal("0.25"), "impressions": 1000 * (n + 1) + 10 * index,
            "clicks": 20 + n + index, "reach": 900 + n, "conversions": Decimal(n % 3 + index),
            "purchase_value": Decimal(40 * (n % 3 + index)) + Decimal("0.5")}


def insert_insights(conn: psycopg.Connection, rows: list[dict]) -> None:
    for r in rows:
        conn.execute(
            "INSERT INTO raw_meta.ads_insights (account_id, date, ad_id, adset_id, campaign_id, currency, spend,"
            " impressions, clicks, reach, conversions, purchase_value, payload) VALUES (%(account_id)s, %(date)s,"
            " %(ad_id)s, %(adset_id)s, %(campaign_id)s, %(currency)s, %(spend)s, %(impressions)s, %(clicks)s,"
            " %(reach)s, %(conversions)s, %(purchase_value)s, '{}') ON CONFLICT (account_id, date, ad_id) DO UPDATE"
            " SET spend = excluded.spend, conversions = excluded.conversions,"
            " purchase_value = excluded.purchase_value, loaded_at = now()", r)


def _load_meta(conn: psycopg.Connection) -> None:
    rows = []
    for day in DAYS:
        for index, (ad, adset, campaign, account, currency) in enumerate(ADS):
            measures = _measures(day, index)
            if day == FIXTURE_DAY and ad in HAND_MADE:
                measures = HAND_MADE[ad]
            rows.append({"account_id": account, "date": day, "ad_id": ad, "adset_id": adset, "campaign_id": campaign,
                         "currency": currency, **measures})
    insert_insights(conn, rows)
    conn.execute("INSERT INTO raw_meta.ad_accounts (id, account_id, name, currency, timezone_name) VALUES"
                 " (%s, '900000000000001', 'Test USD', 'USD', 'America/Jamaica'),"
                 " (%s, '900000000000002', 'Test GBP', 'GBP', 'Europe/London')", (USD_ACCOUNT, GBP_ACCOUNT))
    conn.execute("INSERT INTO raw_meta.campaigns (id, account_id, name) VALUES ('c11', %s, 'C 11'), ('c12', %s, 'C 12')",
                 (USD_ACCOUNT, USD_ACCOUNT))
    conn.execute("INSERT INTO raw_meta.adsets (id, account_id, campaign_id, name) VALUES"
                 " ('s11', %s, 'c11', 'S 11'), ('s12', %s, 'c12', 'S 12')", (USD_ACCOUNT, USD_ACCOUNT))
    for ad, adset, campaign, account, _ in ADS[:3]:
        conn.execute("INSERT INTO raw_meta.ads (id, account_id, campaign_id, adset_id, name) VALUES (%s, %s, %s, %s, %s)",
                     (ad, account, campaign, adset, f"Ad {ad}"))


def _load_ga4(conn: psycopg.Connection) -> None:
    channels = [("Organic Search", "google", "organic", "(organic)", 100), ("Paid Social", "facebook", "cpc", "spring", 50)]
    for n, day in enumerate(DAYS[:3]):
        rows = [(day, day.strftime("%Y%m%d"), src, med, camp, group, False, sessions + n, Decimal("10.5") * n)
                for group, src, med, camp, sessions in channels]
        if day == FIXTURE_DAY:  # GA4 folded some rows into (other): every dimension, the date included
            rows.append((None, "(other)", "(other)", "(other)", "(other)", "(other)", True, 7, Decimal("12.5")))
        for ga4_date, raw_date, src, med, camp, group, other, sessions, revenue in rows:
            conn.execute(
                "INSERT INTO raw_ga4.traffic_acquisition (property_id, report_date, date, date_raw, session_source,"
                " session_medium, session_campaign_name, session_default_channel_group, is_other, sessions, total_users,"
                " new_users, engaged_sessions, user_engagement_duration_seconds, key_events, purchase_revenue, currency,"
                " payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'USD', '{}')",
                (GA4_PROPERTY, day, ga4_date, raw_date, src, med, camp, group, other, sessions, sessions - 5, 3,
                 sessions // 2, 60 * sessions, 1, revenue))


def _load_breezeway(conn: psycopg.Connection) -> None:
    tz = "America/Chicago"
    conn.execute("INSERT INTO raw_breezeway.properties (region_code, id, name, status, timezone) VALUES"
                 " (%s, 1, 'Cabin One', 'active', %s), (%s, 2, 'Cabin Two', 'inactive', %s)", (REGION, tz, REGION, tz))
    created = datetime(2026, 2, 2, 3, 0, tzinfo=timezone.utc)  # 2026-02-01 21:00 in Chicago
    for rid, prop, status in ((11, 1, "active"), (12, 1, "cancelled"), (13, 99, "active")):
        conn.execute(
            "INSERT INTO raw_breezeway.reservations (region_code, id, property_id, status, checkin_date, checkout_date,"
            " timezone, checkin_at, checkout_at, nights, guest_count, created_at, updated_at) VALUES"
            " (%s, %s, %s, %s, date '2026-03-10', date '2026-03-13', %s, timestamptz '2026-03-10 21:00+00',"
            " timestamptz '2026-03-13 15:00+00', 3, 2, %s, %s)", (REGION, rid, prop, status, tz, created, created))


# ---- the issue-19 marts: hand-made rows with hand-computed expectations ----------------------------------
# Region OCC (Denver). Property 1 is active, 2 inactive, 3 deleted upstream. Stays of property 1 (local days):
#   21 guest  Jan 30 -> Feb 2   across the month end; arrives 21:00 local = 04:00 UTC the next day
#   22 guest  Feb 3 -> Feb 5    cancelled
#   23 owner  Feb 5 -> Feb 7    owner stay: not rentable; nobody cleans after it (a missed clean)
#   24 guest  Feb 7 -> Feb 9    its clean finishes after the next guest arrived (a late clean)
#   25 guest  Feb 9 -> Feb 10   deleted upstream
#   26 guest  Feb 10 -> Feb 12  cleaning in progress, no next stay yet
OCC_REGION, OCC_TZ = "occville", "America/Denver"
OCC_STAYS = [  # id, property, status, type_stay, checkin, checkout, checkin_at (UTC), checkout_at (UTC), deleted
    (21, 1, "active", "guest_stay", "2026-01-30", "2026-02-02", "2026-01-31 04:00+00", "2026-02-02 17:00+00", False),
    (22, 1, "cancelled", "guest_stay", "2026-02-03", "2026-02-05", "2026-02-03 23:00+00", "2026-02-05 17:00+00", False),
    (23, 1, "active", "owner_stay", "2026-02-05", "2026-02-07", "2026-02-05 23:00+00", "2026-02-07 17:00+00", False),
    (24, 1, "active", "guest_stay", "2026-02-07", "2026-02-09", "2026-02-07 23:00+00", "2026-02-09 17:00+00", False),
    (25, 1, "active", "guest_stay", "2026-02-09", "2026-02-10", "2026-02-09 23:00+00", "2026-02-10 17:00+00", True),
    (26, 1, "active", "guest_stay", "2026-02-10", "2026-02-12", "2026-02-10 23:00+00", "2026-02-12 17:00+00", False),
    (27, 2, "active", "guest_stay", "2026-02-01", "2026-02-03", "2026-02-01 23:00+00", "2026-02-03 17:00+00", False),
    (28, 3, "active", "guest_stay", "2026-02-01", "2026-02-02", "2026-02-01 23:00+00", "2026-02-02 17:00+00", False),
]
OCC_CLEANS = [  # task id, reservation, scheduled, stage, finished_at (UTC), deleted
    (301, 21, "2026-02-02", "finished", "2026-02-02 20:00+00", False),  # 13:00 local, 3 days before the owner
    (302, 22, "2026-02-05", "finished", "2026-02-05 20:00+00", True),   # the cancelled stay's clean: deleted
    (303, 23, "2026-02-07", "finished", "2026-02-07 20:00+00", True),   # deleted upstream: must not count
    (304, 24, "2026-02-09", "finished", "2026-02-11 01:00+00", False),  # after stay 26 arrived (Feb 10 23:00 UTC)
    (305, 26, "2026-02-12", "in_progress", None, False),
]
# Marketing: the sandbox's campaign mapping (seeds/campaign_mapping.csv) on hand-made rows of FIXTURE_DAY.
SANDBOX_ACCOUNT, SANDBOX_PROPERTY = "act_100000000000001", "310000001"
MAPPED_CAMPAIGN, UNMAPPED_CAMPAIGN = "23850110000000000", "23850110000000001"


def _load_issue19(conn: psycopg.Connection) -> None:
    conn.execute("INSERT INTO raw_breezeway.properties (region_code, id, name, status, timezone, deleted_at) VALUES"
                 " (%s, 1, 'Lodge A', 'active', %s, NULL), (%s, 2, 'Lodge B', 'inactive', %s, NULL),"
                 " (%s, 3, 'Lodge Gone', 'active', %s, timestamptz '2026-02-20 00:00+00')",
                 (OCC_REGION, OCC_TZ) * 3)
    for rid, prop, status, stay, cin, cout, cin_at, cout_at, deleted in OCC_STAYS:
        conn.execute(
            "INSERT INTO raw_breezeway.reservations (region_code, id, property_id, status, type_stay, checkin_date,"
            " checkout_date, timezone, checkin_at, checkout_at, created_at, updated_at, deleted_at) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, timestamptz '2026-01-05 12:00+00',"
            " timestamptz '2026-01-05 12:00+00', %s)",
            (OCC_REGION, rid, prop, status, stay, cin, cout, OCC_TZ, cin_at, cout_at,
             "2026-02-20 00:00+00" if deleted else None))
    for tid, rid, scheduled, stage, finished, deleted in OCC_CLEANS:
        conn.execute(
            "INSERT INTO raw_breezeway.tasks (region_code, id, property_id, name, department, status_stage,"
            " scheduled_date, reservation_id, timezone, started_at, finished_at, deleted_at) VALUES"
            " (%s, %s, 1, 'Departure Clean', 'housekeeping', %s, %s, %s, %s, %s::timestamptz - interval '2 hours', %s, %s)",
            (OCC_REGION, tid, stage, scheduled, rid, OCC_TZ, finished or f"{scheduled} 20:00+00", finished,
             "2026-02-20 00:00+00" if deleted else None))
    # Meta: one mapped and one unmapped campaign of the sandbox's Jamaica account
    insert_insights(conn, [
        {"account_id": SANDBOX_ACCOUNT, "date": FIXTURE_DAY, "ad_id": ad, "adset_id": "s-sb", "campaign_id": campaign,
         "currency": "USD", "spend": spend, "impressions": 4000, "clicks": clicks, "reach": 3000, "conversions": "2",
         "purchase_value": "90"}
        for ad, campaign, spend, clicks in (("m1", MAPPED_CAMPAIGN, "40.00", 80), ("m2", UNMAPPED_CAMPAIGN, "15.00", 10))])
    conn.execute("INSERT INTO raw_meta.campaigns (id, account_id, name) VALUES (%s, %s, 'Campaign 1 - Long Stay')",
                 (MAPPED_CAMPAIGN, SANDBOX_ACCOUNT))
    # GA4: mapped Paid Social traffic, an unmapped Paid Social campaign, and organic traffic (not marketing's)
    for src, med, camp, group, sessions, key_events, revenue in (
            ("facebook", "cpc", "jm_long_stay", "Paid Social", 30, 3, "100.00"),
            ("facebook", "cpc", "retargeting_q4", "Paid Social", 12, 0, "0"),
            ("google", "organic", "(organic)", "Organic Search", 200, 5, "250.00")):
        conn.execute(
            "INSERT INTO raw_ga4.traffic_acquisition (property_id, report_date, date, date_raw, session_source,"
            " session_medium, session_campaign_name, session_default_channel_group, is_other, sessions, key_events,"
            " purchase_revenue, currency, payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, false, %s, %s, %s, 'USD', '{}')",
            (SANDBOX_PROPERTY, FIXTURE_DAY, FIXTURE_DAY, FIXTURE_DAY.strftime("%Y%m%d"), src, med, camp, group,
             sessions, key_events, revenue))


# The Dagster tests' own ad accounts: built by the session build, changed by one test each, then removed.
BACKFILL_ACCOUNT, BLOCKING_ACCOUNT = "act_900000000000008", "act_900000000000009"
BACKFILL_DAYS = [date(2026, 3, 1) + timedelta(days=i) for i in range(5)]
BLOCKING_DAY = date(2026, 3, 20)
PARSE_ACCOUNT, PARSE_DAYS = "act_900000000000010", [date(2026, 4, 1), date(2026, 4, 2)]
FRESH_CLONE_ACCOUNT, FRESH_CLONE_DAY = "act_900000000000011", date(2026, 4, 10)


def dagster_row(account: str, day: date, ad: str, spend: str) -> dict:
    return {"account_id": account, "date": day, "ad_id": ad, "adset_id": "s99", "campaign_id": "c99",
            "currency": "USD", "spend": spend, "impressions": 100, "clicks": 5, "reach": 90, "conversions": "1",
            "purchase_value": "10"}


def _load_dagster_accounts(conn: psycopg.Connection) -> None:
    insert_insights(conn, [dagster_row(BACKFILL_ACCOUNT, day, "a981", "10") for day in BACKFILL_DAYS])
    insert_insights(conn, [dagster_row(BLOCKING_ACCOUNT, BLOCKING_DAY, "a991", "10")])


def mart_spend(conn: psycopg.Connection, account: str) -> dict[date, Decimal]:
    return dict(conn.execute("SELECT date_day, sum(spend) FROM marts.fct_ad_performance_daily WHERE account_id = %s"
                             " GROUP BY 1", (account,)).fetchall())


@pytest.fixture(scope="session")
def dbt_warehouse_url(warehouse_url: str) -> str:
    """A database of its own on the session's server, migrated like the warehouse, with the fixture rows."""
    with psycopg.connect(warehouse_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DBT_DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DBT_DATABASE}"')
    params = conninfo_to_dict(warehouse_url)
    params["dbname"] = DBT_DATABASE
    url = make_conninfo(**params)
    db.migrate(url)
    with psycopg.connect(url) as conn:
        _load_meta(conn)
        _load_ga4(conn)
        _load_breezeway(conn)
        _load_issue19(conn)
        _load_dagster_accounts(conn)
    return url


@pytest.fixture(scope="session")
def dbt_target_dir() -> Iterator[str]:
    """dbt's per-invocation artifacts go to a scratch folder, not into the checkout's dbt_project/target."""
    folder = tempfile.mkdtemp(prefix="adpipeline-dbt-target-")
    saved = os.environ.get("DBT_TARGET_PATH")
    os.environ["DBT_TARGET_PATH"] = folder
    yield folder
    if saved is None:
        os.environ.pop("DBT_TARGET_PATH", None)
    else:
        os.environ["DBT_TARGET_PATH"] = saved
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def built(dbt_warehouse_url: str, dbt_target_dir: str) -> str:
    """`dbt build` of the whole project, once per session; returns the DSN of the built database."""
    ensure_manifest()
    with environment(dbt_environment(dbt_warehouse_url)):
        invocation = dbt_resource().cli(["build"], target_path=Path(dbt_target_dir, "session-build"),
                                        raise_on_error=False)
    invocation.wait()
    results = invocation.get_artifact("run_results.json")["results"]
    failed = {r["unique_id"]: r["message"] for r in results if r["status"] in ("error", "fail", "skipped")}
    assert failed == {}, f"dbt build failed: {json.dumps(failed, indent=1)[:3000]}"
    warned = {r["unique_id"].split(".")[2] for r in results if r["status"] == "warn"}
    # the fixture has a reservation of an unknown property: a WARN test only
    assert warned == {"relationships_fct_reservations_property_key__property_key__ref_dim_properties_"}
    return dbt_warehouse_url


@pytest.fixture
def mart(built: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(built) as conn:
        yield conn


def rows(conn: psycopg.Connection, sql: str, params=None) -> list[tuple]:
    return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def meta_daily_dbt(built: str, dbt_target_dir: str) -> tuple[dg.AssetsDefinition, dict]:
    assets = {a.op.name: a for a in build_dbt_assets(get_config(), ensure_manifest())}
    return assets["dbt_meta_daily"], {"dbt": dbt_resource(), "warehouse": WarehouseResource(url=built)}


@pytest.fixture
def dagster_account(built: str):
    """(connection, account) for one Dagster test; the account's raw and mart rows are removed afterwards,
    so the other tests' "mart = raw" comparisons hold whatever order the tests run in."""
    accounts = []
    with psycopg.connect(built, autocommit=True) as conn:
        def use(account: str) -> tuple[psycopg.Connection, str]:
            accounts.append(account)
            return conn, account

        yield use
        for account in accounts:
            conn.execute("DELETE FROM raw_meta.ads_insights WHERE account_id = %s", (account,))
            for table in ("fct_ad_performance_daily", "fct_campaign_performance_daily"):
                conn.execute(f"DELETE FROM marts.{table} WHERE account_id = %s", (account,))


# ---- Meta ---------------------------------------------------------------------------------------------------


def test_mart_spend_per_day_equals_raw_spend_per_day(mart: psycopg.Connection):
    raw = rows(mart, "SELECT date, sum(spend), sum(conversions), sum(purchase_value), count(*)"
                     " FROM raw_meta.ads_insights GROUP BY 1 ORDER BY 1")
    ads = rows(mart, "SELECT date_day, sum(spend), sum(conversions), sum(purchase_value), count(*)"
                     " FROM marts.fct_ad_performance_daily GROUP BY 1 ORDER BY 1")
    campaigns = rows(mart, "SELECT date_day, sum(spend), sum(conversions), sum(purchase_value)"
                           " FROM marts.fct_campaign_performance_daily GROUP BY 1 ORDER BY 1")
    assert set(DAYS) <= {r[0] for r in raw}
    assert ads == raw
    assert campaigns == [r[:4] for r in raw]


def test_roas_cpa_and_rates_on_the_hand_made_day(mart: psycopg.Connection):
    a101, a102 = (rows(mart, "SELECT spend, ctr, cpc, cpm, cpa, roas FROM marts.fct_ad_performance_daily"
                             " WHERE ad_id = %s AND date_day = %s", (ad, FIXTURE_DAY))[0] for ad in ("a101", "a102"))
    # a101: 50.00 spent, 10 000 impressions, 200 clicks, 4 purchases worth 300.00
    assert a101 == (Decimal("50.00"), Decimal("0.02"), Decimal("0.25"), Decimal("5"), Decimal("12.5"), Decimal("6"))
    # a102 spent nothing: ROAS and CPC are undefined (NULL), not 0 or infinite; CPA is 0 (1 free purchase)
    assert a102 == (Decimal("0"), Decimal("0"), None, Decimal("0"), Decimal("0"), None)
    # campaign c11 = a101 + a102: ratios from the totals, ROAS = purchase value / spend (never conversions / spend)
    spend, conversions, value, cpa, roas, ctr = rows(
        mart, "SELECT spend, conversions, purchase_value, cpa, roas, ctr FROM marts.fct_campaign_performance_daily"
              " WHERE campaign_id = 'c11' AND date_day = %s", (FIXTURE_DAY,))[0]
    assert (spend, conversions, value) == (Decimal("50.00"), Decimal("5"), Decimal("320.00"))
    assert cpa == Decimal("10") and roas == Decimal("6.4")
    assert float(ctr) == pytest.approx(200 / 10100)


def test_roas_is_defined_exactly_when_spend_is_positive(mart: psycopg.Connection):
    bad = rows(mart, "SELECT ad_id, date_day FROM marts.fct_ad_performance_daily"
                     " WHERE (roas IS NOT NULL) <> (spend > 0) OR spend < 0")
    assert bad == []
    for ad_id, day, spend, value, roas in rows(mart, "SELECT ad_id, date_day, spend, purchase_value, roas"
                                                     " FROM marts.fct_ad_performance_daily WHERE spend > 0"):
        assert roas == pytest.approx(value / spend), (ad_id, day)


def test_native_and_reporting_currency(mart: psycopg.Connection):
    got = rows(mart, "SELECT ad_id, currency, reporting_currency, fx_rate, spend, spend_reporting"
                     " FROM marts.fct_ad_performance_daily WHERE date_day = %s AND ad_id IN ('a103', 'a201')"
                     " ORDER BY ad_id", (FIXTURE_DAY,))
    (_, usd, rep1, rate1, spend1, rep_spend1), (_, gbp, rep2, rate2, spend2, rep_spend2) = got
    assert (usd, rep1, rate1, rep_spend1) == ("USD", "USD", 1, spend1)
    assert (gbp, rep2, rate2) == ("GBP", "USD", Decimal("1.34"))  # seeds/fx_rates.csv, valid from 2026-01-01
    assert rep_spend2 == spend2 * Decimal("1.34")


def test_one_definition_of_conversions(mart: psycopg.Connection):
    columns = {r[0] for r in rows(mart, "SELECT column_name FROM information_schema.columns"
                                        " WHERE table_schema = 'marts' AND table_name = 'fct_ad_performance_daily'")}
    assert "conversions" in columns and not [c for c in columns if c.startswith("conversions_")]


# ---- GA4 -------------------------------------------------------------------------------------------------------


def test_web_traffic_excludes_other_rows_but_counts_them(mart: psycopg.Connection):
    fact = rows(mart, "SELECT date_day, sum(sessions), count(*), count(*) FILTER (WHERE '(other)' IN"
                      " (channel_group, source, medium, campaign_name)) FROM marts.fct_web_traffic_daily GROUP BY 1 ORDER BY 1")
    raw = rows(mart, "SELECT report_date, sum(sessions), count(*), 0::bigint FROM raw_ga4.traffic_acquisition"
                     " WHERE NOT is_other GROUP BY 1 ORDER BY 1")
    assert fact == raw and len(fact) == 3
    other = rows(mart, "SELECT date_day, report_rows, other_rows, sessions_total, other_sessions"
                       " FROM marts.fct_web_traffic_other_daily WHERE property_id = %s ORDER BY 1", (GA4_PROPERTY,))
    assert [o[2] for o in other] == [0, 1, 0]
    day = dict((o[0], o) for o in other)[FIXTURE_DAY]
    assert day[1:] == (3, 1, 101 + 51 + 7, 7)


# ---- Breezeway ------------------------------------------------------------------------------------------------


def test_reservations_keep_cancellations_and_flag_them(mart: psycopg.Connection):
    got = rows(mart, "SELECT reservation_id, status, is_cancelled, property_known, created_date_local, nights,"
                     " checkin_at FROM marts.fct_reservations WHERE region_code = %s ORDER BY 1", (REGION,))
    assert [(r[0], r[1], r[2], r[3]) for r in got] == [
        (11, "active", False, True), (12, "cancelled", True, True), (13, "active", False, False)]
    assert {r[4] for r in got} == {date(2026, 2, 1)}  # created 03:00 UTC = the evening before in Chicago
    assert got[0][6] == datetime(2026, 3, 10, 21, 0, tzinfo=timezone.utc)
    props = rows(mart, "SELECT property_key, is_active, reservations, reservations_not_cancelled FROM marts.dim_properties"
                       " WHERE region_code = %s ORDER BY 1", (REGION,))
    assert props == [(f"{REGION}:1", True, 2, 1), (f"{REGION}:2", False, 0, 0)]


# ---- through Dagster: blocking tests, partition windows ------------------------------------------------------


def test_a_date_range_backfill_rebuilds_exactly_those_days(dagster_account, meta_daily_dbt):
    conn, account = dagster_account(BACKFILL_ACCOUNT)
    assets_def, resources = meta_daily_dbt
    days = BACKFILL_DAYS
    assert mart_spend(conn, account) == dict.fromkeys(days, Decimal("10"))  # as the session build left it

    # Meta restates every day; day 3 loses all its rows. Only days 2-3 are backfilled, in one run.
    conn.execute("UPDATE raw_meta.ads_insights SET spend = 99 WHERE account_id = %s", (account,))
    conn.execute("DELETE FROM raw_meta.ads_insights WHERE account_id = %s AND date = %s", (account, days[2]))
    result = dg.materialize([assets_def], resources=resources, raise_on_error=False,
                            tags=range_tags(dg.PartitionKeyRange(days[1].isoformat(), days[2].isoformat())))
    assert result.success
    assert mart_spend(conn, account) == {days[0]: 10, days[1]: 99, days[3]: 10, days[4]: 10}
    events = [e for e in result.get_asset_materialization_events()
              if e.asset_key.to_user_string() == "marts/fct_ad_performance_daily"]
    assert {e.partition for e in events} == {days[1].isoformat(), days[2].isoformat()}
    # the table's row count is recorded with each materialization (views are not counted)
    total = conn.execute("SELECT count(*) FROM marts.fct_ad_performance_daily").fetchone()[0]
    assert {e.step_materialization_data.materialization.metadata["dagster/row_count"].value for e in events} == {total}


def test_a_failing_error_test_blocks_the_downstream_models(dagster_account, meta_daily_dbt):
    conn, account = dagster_account(BLOCKING_ACCOUNT)
    assets_def, resources = meta_daily_dbt
    assert mart_spend(conn, account) == {BLOCKING_DAY: 10}  # as the session build left it

    insert_insights(conn, [dagster_row(account, BLOCKING_DAY, "a992", "-5")])  # negative spend: wrong upstream
    result = dg.materialize([assets_def], resources=resources, partition_key=BLOCKING_DAY.isoformat(),
                            raise_on_error=False)
    assert not result.success
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [(e.asset_key.to_user_string(), e.check_name, e.severity) for e in failed] == [
        ("staging/stg_meta__ads_insights", "non_negative_stg_meta__ads_insights_spend", dg.AssetCheckSeverity.ERROR)]
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "marts/fct_ad_performance_daily" not in materialized
    assert "marts/fct_campaign_performance_daily" not in materialized
    assert mart_spend(conn, account) == {BLOCKING_DAY: 10}  # the mart kept its last good numbers


def _dbt_build_reports(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id) if e.user_message.startswith("dbt build: parse")]


def test_partial_parsing_survives_runs_over_other_windows_with_one_invocation_each(dagster_account, meta_daily_dbt):
    """The partition window changes every run; dbt must not re-parse the project for it (it did while the
    window was passed as --vars: "config vars ... have changed")."""
    conn, account = dagster_account(PARSE_ACCOUNT)
    assets_def, resources = meta_daily_dbt
    insert_insights(conn, [dagster_row(account, day, "a1", "7") for day in PARSE_DAYS])
    reports = []
    for day in PARSE_DAYS:
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize([assets_def], resources=resources, partition_key=day.isoformat(), instance=instance)
            assert result.success
            reports.append(_dbt_build_reports(instance, result.run_id))
    assert [len(r) for r in reports] == [1, 1]  # one dbt invocation per run
    assert reports[1][0].startswith("dbt build: parse partial;"), reports
    # and each run's window decided what it rebuilt: both days, as raw says
    assert mart_spend(conn, account) == dict.fromkeys(PARSE_DAYS, Decimal("7"))


def test_the_first_run_after_the_stack_builds_the_manifest_does_not_parse_the_project_again(dagster_account,
                                                                                          meta_daily_dbt):
    """A fresh clone has no manifest: the stack's full parse that builds it, run as this warehouse's runs parse,
    leaves their parse state, so the first run parses partially (it parsed fully: "saved manifest not found")."""
    conn, account = dagster_account(FRESH_CLONE_ACCOUNT)
    assets_def, resources = meta_daily_dbt
    insert_insights(conn, [dagster_row(account, FRESH_CLONE_DAY, "a1", "7")])
    prepare_manifest(resources["warehouse"].dsn(), get_config(), force=True)  # a rebuilt manifest: no state of it yet
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([assets_def], resources=resources, partition_key=FRESH_CLONE_DAY.isoformat(),
                                instance=instance)
        assert result.success
        reports = _dbt_build_reports(instance, result.run_id)
    assert len(reports) == 1 and reports[0].startswith("dbt build: parse partial;"), reports
    assert mart_spend(conn, account) == {FRESH_CLONE_DAY: Decimal("7")}


def _fresh_warning(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id) if e.user_message.startswith("fresh warehouse:")]


def test_on_a_fresh_warehouse_each_dbt_job_builds_the_other_jobs_parents_it_reads(warehouse_url: str,
                                                                                  dbt_target_dir: str):
    """A fresh install: the Meta facts read stg_fx_rates (unpartitioned set) and the cross-source mart reads the
    GA4 daily facts, each built by another dbt job. Whichever job runs first builds them first instead of
    failing on "relation does not exist"; once they exist no extra invocation runs."""
    name = "dbt_fresh_install"
    with psycopg.connect(warehouse_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(**{**conninfo_to_dict(warehouse_url), "dbname": name})
    try:
        db.migrate(url)
        with psycopg.connect(url) as conn:
            _load_meta(conn)
            _load_ga4(conn)
            _load_breezeway(conn)
        assets = {a.op.name: a for a in build_dbt_assets(get_config(), ensure_manifest())}
        resources = {"dbt": dbt_resource(), "warehouse": WarehouseResource(url=url)}
        with dg.DagsterInstance.ephemeral() as instance:
            meta = dg.materialize([assets["dbt_meta_daily"]], resources=resources, instance=instance,
                                  partition_key=FIXTURE_DAY.isoformat(), raise_on_error=False)
            assert meta.success
            assert _fresh_warning(instance, meta.run_id) == [
                "fresh warehouse: fx_rates, stg_fx_rates (built by another dbt job) do not exist yet; building them first"]
            models = dg.materialize([assets["dbt_models"]], resources=resources, instance=instance, raise_on_error=False)
            assert models.success
            [warning] = _fresh_warning(instance, models.run_id)
            assert "fct_web_traffic_daily" in warning and "stg_ga4__traffic_acquisition" in warning, warning
            assert "fct_campaign_performance_daily" not in warning  # built by the Meta run before
            again = dg.materialize([assets["dbt_meta_daily"]], resources=resources, instance=instance,
                                   partition_key=FIXTURE_DAY.isoformat())
            assert _fresh_warning(instance, again.run_id) == []
        with psycopg.connect(url) as conn:
            spend = conn.execute("SELECT sum(spend) FROM marts.fct_ad_performance_daily WHERE date_day = %s",
                                 (FIXTURE_DAY,)).fetchone()[0]
            raw = conn.execute("SELECT sum(spend) FROM raw_meta.ads_insights WHERE date = %s", (FIXTURE_DAY,)).fetchone()[0]
            assert spend == raw
            sessions = conn.execute("SELECT sum(sessions) FROM marts.fct_marketing_channel_daily").fetchone()[0]
            assert sessions and sessions > 0
    finally:
        with psycopg.connect(warehouse_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---- issue 19: occupancy, turnovers, cross-channel marketing, deleted rows ----------------------------------


def test_deleted_rows_stay_in_staging_for_audit_but_leave_dims_and_facts(mart: psycopg.Connection):
    staged = rows(mart, "SELECT property_id, is_deleted FROM staging.stg_breezeway__properties WHERE region_code = %s"
                        " ORDER BY 1", (OCC_REGION,))
    assert staged == [(1, False), (2, False), (3, True)]
    dim = rows(mart, "SELECT property_id, is_active FROM marts.dim_properties WHERE region_code = %s ORDER BY 1",
               (OCC_REGION,))
    assert dim == [(1, True), (2, False)]  # the deleted property is not shown, let alone as active
    facts = rows(mart, "SELECT reservation_id FROM marts.fct_reservations WHERE region_code = %s ORDER BY 1",
                 (OCC_REGION,))
    assert [r[0] for r in facts] == [21, 22, 23, 24, 26, 27, 28]  # 25 was deleted upstream
    assert rows(mart, "SELECT count(*) FROM staging.stg_breezeway__tasks WHERE region_code = %s AND is_deleted",
                (OCC_REGION,)) == [(2,)]


def test_occupancy_by_night_with_a_month_end_a_cancellation_an_owner_stay_and_an_inactive_home(mart):
    got = {(r[0], r[1]): r[2:] for r in rows(
        mart, "SELECT property_id, date_day, nights_available, nights_rentable, nights_booked, nights_owner,"
              " nights_guest, cancelled_stays, occupancy FROM marts.fct_property_occupancy_daily"
              " WHERE region_code = %s", (OCC_REGION,))}
    days = [date(2026, 1, 30) + timedelta(days=i) for i in range(13)]  # first check-in .. last night
    assert sorted(got) == sorted((p, d) for p in (1, 2) for d in days)  # property 3 is deleted: not here
    one = {d: got[(1, d)] for d in days}
    booked = {date(2026, 1, 30), date(2026, 1, 31), date(2026, 2, 1), date(2026, 2, 7), date(2026, 2, 8),
              date(2026, 2, 10), date(2026, 2, 11)}
    owner = {date(2026, 2, 5), date(2026, 2, 6)}
    for d, (available, rentable, nights_booked, nights_owner, guest, cancelled, occupancy) in one.items():
        assert available == 1, d
        assert (rentable, nights_owner) == ((0, 1) if d in owner else (1, 0)), d
        assert nights_booked == guest == (1 if d in booked else 0), d
        assert occupancy == (None if d in owner else Decimal(nights_booked)), d
        assert cancelled == (1 if d in (date(2026, 2, 3), date(2026, 2, 4)) else 0), d
    # the inactive home: its guest nights are recorded, but it was never available, so no occupancy
    assert {got[(2, d)][:3] for d in days} == {(0, 0, 0)}
    assert sum(got[(2, d)][4] for d in days) == 2 and {got[(2, d)][6] for d in days} == {None}
    # the month end splits stay 21: 2 nights in January, 1 in February; monthly occupancy from sums
    monthly = dict((r[0], r[1:]) for r in rows(
        mart, "SELECT date_trunc('month', date_day)::date, sum(nights_booked), sum(nights_rentable),"
              " sum(nights_booked)::numeric / sum(nights_rentable) FROM marts.fct_property_occupancy_daily"
              " WHERE property_key = %s GROUP BY 1", (f"{OCC_REGION}:1",)))
    assert monthly[date(2026, 1, 1)][:2] == (2, 2)
    assert monthly[date(2026, 2, 1)][:2] == (5, 9)  # Feb 1-11: 11 nights - 2 owner nights; 5 booked


# Region DBL (Chicago), property 1, overlapping stays (local nights): guest A Mar 1-3, guest B Mar 3-4, owner C
# Mar 4-5, block D Mar 5-6, cancelled guest E Mar 2-5, guest F Mar 8; property 2 has no stay at all.
DBL_REGION, DBL_TZ = "dblville", "America/Chicago"
DBL_STAYS = [  # id, property, status, type_stay, checkin, checkout
    (41, 1, "active", "guest_stay", "2026-03-01", "2026-03-04"),
    (42, 1, "active", "guest_stay", "2026-03-03", "2026-03-05"),
    (43, 1, "active", "owner_stay", "2026-03-04", "2026-03-06"),
    (44, 1, "active", "maintenance_block", "2026-03-05", "2026-03-07"),
    (45, 1, "cancelled", "guest_stay", "2026-03-02", "2026-03-06"),
    (46, 1, "active", "guest_stay", "2026-03-08", "2026-03-09"),
]


def _dbt(built: str, target: Path, *args: str) -> dict[str, tuple[str, int | None]]:
    """One dbt invocation on the session's database: {node name: (status, failures)}."""
    with environment(dbt_environment(built)):
        invocation = dbt_resource().cli(list(args), target_path=target, raise_on_error=False)
    invocation.wait()
    return {r["unique_id"].split(".")[2]: (r["status"], r.get("failures"))
            for r in invocation.get_artifact("run_results.json")["results"]}


def test_occupancy_of_overlapping_stays_and_of_a_home_without_stays(built: str, dbt_target_dir: str):
    """Double bookings, a guest over an owner stay, an owner over a block, a cancellation under them all, a gap."""
    with psycopg.connect(built, autocommit=True) as conn:
        try:
            conn.execute("INSERT INTO raw_breezeway.properties (region_code, id, name, status, timezone) VALUES"
                         " (%s, 1, 'Busy', 'active', %s), (%s, 2, 'Empty', 'active', %s)", (DBL_REGION, DBL_TZ) * 2)
            for rid, prop, status, stay, cin, cout in DBL_STAYS:
                conn.execute(
                    "INSERT INTO raw_breezeway.reservations (region_code, id, property_id, status, type_stay,"
                    " checkin_date, checkout_date, timezone, created_at, updated_at) VALUES"
                    " (%s, %s, %s, %s, %s, %s, %s, %s, timestamptz '2026-01-05 12:00+00',"
                    " timestamptz '2026-01-05 12:00+00')", (DBL_REGION, rid, prop, status, stay, cin, cout, DBL_TZ))
            built_now = _dbt(built, Path(dbt_target_dir, "overlaps"), "build", "--select",
                             "dim_properties fct_property_occupancy_daily")
            assert [n for n, (status, _) in built_now.items() if status in ("error", "fail", "skipped")] == []
            got = {(r[0], r[1]): r[2:] for r in rows(
                conn, "SELECT property_id, date_day, nights_booked, nights_owner, nights_blocked, nights_rentable,"
                      " is_double_booked, cancelled_stays FROM marts.fct_property_occupancy_daily"
                      " WHERE region_code = %s", (DBL_REGION,))}
            days = [date(2026, 3, 1) + timedelta(days=i) for i in range(8)]  # first check-in .. last night
            assert sorted(got) == sorted((p, d) for p in (1, 2) for d in days)
            # (booked, owner, blocked, rentable, double booked, cancelled) per night of property 1
            assert [got[(1, d)] for d in days] == [
                (1, 0, 0, 1, False, 0), (1, 0, 0, 1, False, 1), (1, 0, 0, 1, True, 1), (1, 0, 0, 1, True, 1),
                (0, 1, 0, 0, True, 1), (0, 0, 1, 0, False, 0), (0, 0, 0, 1, False, 0), (1, 0, 0, 1, False, 0)]
            assert {got[(2, d)] for d in days} == {(0, 0, 0, 1, False, 0)}
        finally:
            conn.execute("DELETE FROM raw_breezeway.reservations WHERE region_code = %s", (DBL_REGION,))
            conn.execute("DELETE FROM raw_breezeway.properties WHERE region_code = %s", (DBL_REGION,))
            _dbt(built, Path(dbt_target_dir, "overlaps-undone"), "run", "--select",
                 "dim_properties fct_property_occupancy_daily")


def test_a_clean_without_a_stay_counts_for_the_gap_it_is_scheduled_in(built: str, dbt_target_dir: str):
    """A housekeeping task of no reservation is the clean of the departure whose gap [check-out day, next
    check-in day] holds its scheduled day, bounds included; a finished one beats one in progress."""
    region, tz = "gapville", "America/Chicago"
    stays = [(51, "2026-04-01", "2026-04-03", "2026-04-01 21:00+00", "2026-04-03 16:00+00"),
             (52, "2026-04-06", "2026-04-08", "2026-04-06 21:00+00", "2026-04-08 16:00+00")]
    cleans = [(601, "2026-04-06", "finished", "2026-04-06 18:00+00"),  # next check-in day, before arrival
              (602, "2026-04-03", "in_progress", None),                # check-out day, not finished
              (603, "2026-04-02", "finished", "2026-04-02 18:00+00"),  # during stay 51: no gap's
              (604, "2026-04-09", "finished", "2026-04-09 18:00+00")]  # after stay 52's gap [Apr 8, Apr 8]
    with psycopg.connect(built, autocommit=True) as conn:
        try:
            conn.execute("INSERT INTO raw_breezeway.properties (region_code, id, name, status, timezone) VALUES"
                         " (%s, 1, 'Gap', 'active', %s)", (region, tz))
            for rid, cin, cout, cin_at, cout_at in stays:
                conn.execute(
                    "INSERT INTO raw_breezeway.reservations (region_code, id, property_id, status, type_stay,"
                    " checkin_date, checkout_date, timezone, checkin_at, checkout_at, created_at, updated_at) VALUES"
                    " (%s, %s, 1, 'active', 'guest_stay', %s, %s, %s, %s, %s, timestamptz '2026-01-05 12:00+00',"
                    " timestamptz '2026-01-05 12:00+00')", (region, rid, cin, cout, tz, cin_at, cout_at))
            for tid, scheduled, stage, finished in cleans:
                conn.execute(
                    "INSERT INTO raw_breezeway.tasks (region_code, id, property_id, name, department, status_stage,"
                    " scheduled_date, timezone, started_at, finished_at) VALUES"
                    " (%s, %s, 1, 'Departure Clean', 'housekeeping', %s, %s, %s, %s::timestamptz - interval '1 hour', %s)",
                    (region, tid, stage, scheduled, tz, finished or f"{scheduled} 18:00+00", finished))
            results = _dbt(built, Path(dbt_target_dir, "gap-cleans"), "build", "--select", "fct_turnovers")
            assert [n for n, (status, _) in results.items() if status in ("error", "fail", "skipped")] == []
            got = dict((r[0], r[1:]) for r in rows(
                conn, "SELECT reservation_id, clean_task_key, turnover_status FROM marts.fct_turnovers AS t"
                      " JOIN staging.stg_breezeway__reservations AS r USING (reservation_key) WHERE t.region_code = %s",
                (region,)))
            assert got == {51: (f"{region}:601", "cleaned"), 52: (None, "pending")}
        finally:
            for table in ("tasks", "reservations", "properties"):
                conn.execute(f"DELETE FROM raw_breezeway.{table} WHERE region_code = %s", (region,))
            _dbt(built, Path(dbt_target_dir, "gap-cleans-undone"), "run", "--select", "fct_turnovers")


def test_the_occupancy_tests_fail_on_a_broken_row_and_name_what_it_breaks(built: str, dbt_target_dir: str):
    """The folded row test (one scan) fails on each assertion it took over, and its rows say which one broke;
    the key is Postgres' unique index: a duplicate row is refused, and without the index the key test fails."""
    table, key = "marts.fct_property_occupancy_daily", (f"{OCC_REGION}:1", date(2026, 2, 7))
    breaks = {  # (column, bad value, day) -> the assertion it breaks
        ("nights_booked", 2, date(2026, 2, 7)): "nights_nest",
        ("occupancy", None, date(2026, 2, 8)): "occupancy_in_0_1",
        ("region_code", None, date(2026, 2, 10)): "region_code_not_null",
        ("property_key", None, date(2026, 2, 11)): "property_key_not_null",
    }
    target = Path(dbt_target_dir, "broken-occupancy")
    with psycopg.connect(built, autocommit=True) as conn:
        saved = rows(conn, f"SELECT * FROM {table} WHERE property_key = %s", (key[0],))
        try:
            for (column, value, day) in breaks:
                conn.execute(f"UPDATE {table} SET {column} = %s WHERE property_key = %s AND date_day = %s",
                             (value, key[0], day))
            results = _dbt(built, target, "test", "--select", "fct_property_occupancy_daily")
            assert results["fct_property_occupancy_daily_row_assertions"] == ("fail", len(breaks))
            assert results["unique_index_fct_property_occupancy_daily_property_key__date_day"] == ("pass", 0)
            compiled = next((target / "compiled").rglob("fct_property_occupancy_daily_row_assertions.sql")).read_text()
            named = {r[1]: r[0] for r in rows(conn, f"SELECT failed_assertions, date_day FROM ({compiled}) AS t")}
            assert named == {day: [assertion] for (_, _, day), assertion in breaks.items()}

            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute(f"INSERT INTO {table} SELECT * FROM {table} WHERE property_key = %s AND date_day = %s",
                             key)
            index = rows(conn, "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass"
                               " AND indisunique", (table,))
            assert len(index) == 1
            conn.execute(f"DROP INDEX {index[0][0]}")
            results = _dbt(built, target, "test", "--select", "fct_property_occupancy_daily")
            assert results["unique_index_fct_property_occupancy_daily_property_key__date_day"] == ("fail", 1)
        finally:
            conn.execute(f"DELETE FROM {table} WHERE property_key = %s OR property_key IS NULL AND date_day"
                         " BETWEEN date '2026-01-30' AND date '2026-02-11'", (key[0],))
            with conn.cursor() as cur:
                columns = ", ".join(d.name for d in conn.execute(f"SELECT * FROM {table} LIMIT 0").description)
                cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(saved[0]))})", saved)
            conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS fct_property_occupancy_daily_key ON {table}"
                         " (property_key, date_day)")


def test_turnovers_flag_the_missed_and_the_late_clean_in_local_time(mart: psycopg.Connection):
    got = {r[0]: r[1:] for r in rows(
        mart, "SELECT reservation_key, next_reservation_key, clean_task_key, turnover_status, is_flagged,"
              " checkout_local, clean_finished_local, next_checkin_local FROM marts.fct_turnovers"
              " WHERE region_code = %s", (OCC_REGION,))}
    key = lambda n: f"{OCC_REGION}:{n}"  # noqa: E731
    assert set(got) == {key(n) for n in (21, 23, 24, 26, 27, 28)}  # cancelled 22 and deleted 25 are no departures
    status = {k: (v[0], v[1], v[2], v[3]) for k, v in got.items()}
    assert status[key(21)] == (key(23), key(301), "cleaned", False)
    assert status[key(23)] == (key(24), None, "missing", True)  # its only clean was deleted upstream
    assert status[key(24)] == (key(26), key(304), "late", True)
    assert status[key(26)] == (None, key(305), "pending", False)  # in progress, nobody arriving yet
    assert status[key(27)][2] == status[key(28)][2] == "pending"
    # wall-clock times in Denver (MST, UTC-7)
    assert got[key(21)][4:6] == (datetime(2026, 2, 2, 10, 0), datetime(2026, 2, 2, 13, 0))
    assert got[key(24)][5:] == (datetime(2026, 2, 10, 18, 0), datetime(2026, 2, 10, 16, 0))


def test_marketing_joins_meta_and_ga4_through_the_mapping_and_reports_what_is_unmatched(mart: psycopg.Connection):
    got = {r[0]: r[1:] for r in rows(
        mart, "SELECT campaign_key, match_status, meta_campaign_name, spend_reporting, clicks, sessions,"
              " ga4_key_events, ga4_revenue_reporting, utm_campaigns FROM marts.fct_marketing_channel_daily"
              " WHERE date_day = %s", (FIXTURE_DAY,))}
    assert got[f"meta:{MAPPED_CAMPAIGN}"] == ("matched", "Campaign 1 - Long Stay", Decimal("40.00"), 80, 30,
                                              Decimal("3"), Decimal("100.00"), f"{SANDBOX_PROPERTY}:jm_long_stay")
    assert got[f"meta:{UNMAPPED_CAMPAIGN}"][:5] == ("unmatched_spend", None, Decimal("15.00"), 10, 0)
    assert got[f"ga4:{SANDBOX_PROPERTY}:retargeting_q4"][:5] == ("unmatched_sessions", None, 0, 0, 12)
    assert got[f"ga4:{GA4_PROPERTY}:spring"][0] == "unmatched_sessions"  # the older fixture's Paid Social rows
    assert not [k for k in got if "(organic)" in k]  # organic traffic is not a marketing campaign
    # the GBP account's spend, in the reporting currency (1.34 USD per GBP from 2026-01-01)
    gbp = rows(mart, "SELECT spend FROM marts.fct_campaign_performance_daily WHERE campaign_id = 'c21' AND date_day = %s",
               (FIXTURE_DAY,))[0][0]
    assert got["meta:c21"][:3] == ("unmatched_spend", None, gbp * Decimal("1.34"))


def test_marketing_totals_reconcile_with_raw(mart: psycopg.Connection):
    # (the Dagster tests' accounts change their raw rows and rebuild only the Meta facts: left out)
    dagster_accounts = (BACKFILL_ACCOUNT, BLOCKING_ACCOUNT)
    spend = rows(mart, "SELECT date_day, sum(spend_reporting) FROM marts.fct_marketing_channel_daily"
                       " WHERE meta_account_id IS NULL OR meta_account_id <> ALL(%s) GROUP BY 1 ORDER BY 1",
                 (list(dagster_accounts),))
    raw_spend = rows(mart, "SELECT i.date, sum(i.spend * fx.rate) FROM raw_meta.ads_insights AS i"
                           " JOIN staging.stg_fx_rates AS fx ON fx.currency = i.currency"
                           " AND i.date >= fx.valid_from AND i.date < fx.valid_to"
                           " WHERE i.account_id <> ALL(%s) GROUP BY 1 ORDER BY 1", (list(dagster_accounts),))
    assert spend == raw_spend and len(spend) == len(DAYS)
    sessions = rows(mart, "SELECT date_day, sum(sessions) FROM marts.fct_marketing_channel_daily"
                          " WHERE sessions > 0 GROUP BY 1 ORDER BY 1")
    raw_sessions = rows(mart, "SELECT report_date, sum(sessions) FROM raw_ga4.traffic_acquisition"
                              " WHERE NOT is_other AND (session_default_channel_group = 'Paid Social'"
                              " OR (property_id, session_campaign_name) IN (SELECT ga4_property_id, utm_campaign"
                              " FROM staging.campaign_mapping)) GROUP BY 1 ORDER BY 1")
    assert sessions == raw_sessions and len(sessions) == 3


def test_occupancy_and_turnovers_reconcile_with_raw(mart: psycopg.Connection):
    nights = rows(mart, "SELECT sum(nights_guest) FROM marts.fct_property_occupancy_daily")[0][0]
    raw = rows(mart, "SELECT count(DISTINCT (r.region_code, r.property_id, n::date)) FROM raw_breezeway.reservations AS r"
                     " JOIN raw_breezeway.properties AS p ON (p.region_code, p.id) = (r.region_code, r.property_id)"
                     " CROSS JOIN generate_series(r.checkin_date, r.checkout_date - 1, interval '1 day') AS n"
                     " WHERE r.deleted_at IS NULL AND p.deleted_at IS NULL AND lower(r.status) NOT IN ('cancelled', 'canceled')"
                     " AND coalesce(r.type_stay, '') NOT IN ('owner_stay', 'maintenance_block')")[0][0]
    assert nights == raw > 0
    departures = rows(mart, "SELECT count(*) FROM marts.fct_turnovers")[0][0]
    raw_departures = rows(mart, "SELECT count(*) FROM raw_breezeway.reservations WHERE deleted_at IS NULL"
                                " AND lower(status) NOT IN ('cancelled', 'canceled')")[0][0]
    assert departures == raw_departures


# ---- plain dbt after one documented command ------------------------------------------------------------------


def test_plain_dbt_reaches_the_warehouse_after_warehouse_env(built: str, tmp_path: Path):
    """`eval "$(adpipeline warehouse env)"`, then dbt itself from dbt_project/: debug connects, source
    freshness has sources to check (and they are fresh: just loaded), docs generate reads the catalog."""
    venv_bin = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADPIPELINE_DBT_", "DBT_ENV_SECRET_"))}
    env.update({"ADPIPELINE_WAREHOUSE_URL": built, "PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"})
    target = tmp_path / "target"  # artifacts and logs out of the checkout
    env.update({"DBT_TARGET_PATH": str(target), "DBT_LOG_PATH": str(tmp_path / "logs")})
    # freshness exits 1 here: the fixture leaves some landing tables empty, and an empty source is stale
    script = (f'set -e; eval "$(adpipeline warehouse env)"; cd "{DBT_PROJECT_DIR}"; '
              'dbt debug; dbt source freshness || echo "freshness exit $?"; dbt docs generate')
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "All checks passed!" in output
    assert "Nothing to do" not in output
    assert "freshness exit 1" in output
    freshness = {r["unique_id"].split(".", 2)[-1]: r["status"]
                 for r in json.loads((target / "sources.json").read_text())["results"]}
    # just loaded: fresh; never loaded: stale at ERROR (the thresholds table's limits, see test_dbt_wiring);
    # dimensions declare no freshness (data arrival is no signal for them)
    assert freshness == {
        "raw_meta.ads_insights": "pass", "raw_meta.account_insights": "error", "raw_breezeway.reservations": "pass",
        "raw_breezeway.tasks": "pass", "raw_ga4.traffic_acquisition": "pass", "raw_ga4.landing_page_events": "error"}
    # ... and the Dagster checks `dbt_source_freshness` say the same, table by table, from one query each
    checks = build_source_freshness_checks(ensure_manifest(), get_config())
    specs = [dg.AssetSpec(spec.asset_key) for c in checks for spec in c.check_specs]
    result = dg.materialize([*specs, *checks], resources={"warehouse": WarehouseResource(url=built)},
                            selection=dg.AssetSelection.checks(*checks), raise_on_error=False)
    dagster = {f"raw_{e.asset_key.path[0]}.{e.asset_key.path[1]}":
               "pass" if e.passed else e.severity.value.lower() for e in result.get_asset_check_evaluations()}
    assert dagster == freshness
    newest = {r["unique_id"].split(".", 2)[-1]: r.get("max_loaded_at")
              for r in json.loads((target / "sources.json").read_text())["results"]}
    for evaluation in result.get_asset_check_evaluations():
        ours = evaluation.metadata["max_loaded_at"].value
        theirs = newest[f"raw_{evaluation.asset_key.path[0]}.{evaluation.asset_key.path[1]}"]
        theirs = datetime.fromisoformat(theirs).replace(tzinfo=timezone.utc)
        if ours is None:  # dbt's stand-in for "no rows"
            assert theirs.year == 1, evaluation.asset_key
        else:
            assert datetime.fromisoformat(ours) == theirs, evaluation.asset_key
    catalog = json.loads((target / "catalog.json").read_text())["nodes"]
    assert "model.adpipeline.fct_marketing_channel_daily" in catalog
    password = conninfo_to_dict(built).get("password")
    assert password and password not in output  # the embedded server has one; dbt never prints it


def test_the_marts_declared_column_types_are_what_dbt_builds(mart: psycopg.Connection):
    """data_type in models/marts/_marts.yml (the UI's Columns table) matches the built tables, column for column."""
    from adpipeline.definitions import defs

    short = {"timestamp with time zone": "timestamptz"}
    built_types: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows(mart, "SELECT table_name, column_name, data_type FROM information_schema.columns"
                                               " WHERE table_schema = 'marts' ORDER BY table_name, ordinal_position"):
        built_types.setdefault(table, {})[column] = short.get(data_type, data_type)
    graph = defs.resolve_asset_graph()
    declared = {key.path[-1]: {c.name: c.type for c in graph.get(key).metadata["dagster/column_schema"].columns}
                for key in graph.get_all_asset_keys() if key.path[0] == "marts"}
    assert declared == built_types
