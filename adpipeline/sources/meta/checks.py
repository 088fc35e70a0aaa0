"""Checks on the Meta assets: the shared lateness and all-scopes-loaded signals, and data checks.

Data checks look at the trailing attribution window (config, default 28 days) ending at the newest day
loaded, so they need no clock and re-evaluate the same data the same way:
  completeness    every (account, day) of the window has a successful sync, the tables hold exactly the
                  rows that sync loaded, and a day with delivery at account level has ad rows (ERROR)
  reconciliation  account-level spend = sum of ad-level spend per account and day, within rounding (ERROR,
                  blocking: marts must not get wrong money); a day still open when it was pulled is judged
                  after the pull that settles it
  ads known       every insights row's ad is in meta/ads (WARN: new ads can arrive between hierarchy runs)
  spend >= 0      (ERROR, blocking)
  purchases mapped  purchase-like actions arrived but none of the account's purchase action types is among
                  them, so conversions load as 0 (WARN: a config fix, meta.purchase_action_types)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg

from adpipeline import clock as pipeline_clock
from adpipeline.config import SourcesConfig
from adpipeline.monitoring import thresholds
from adpipeline.monitoring.checks import (
    Evaluation,
    all_scopes_loaded_check,
    build_check,
    lateness_check,
)
from adpipeline.sources.meta.assets import AD_ACCOUNTS, ADS_INSIGHTS, HIERARCHY_KEYS, SOURCE

# Each ad row's spend is rounded to the cent, the account total once: they may differ by half a cent a row.
ROUNDING_PER_ROW = Decimal("0.005")
ROUNDING_BASE = Decimal("0.01")
MAX_LISTED = 20


def _window(conn: psycopg.Connection, days: int) -> tuple[date, date] | None:
    """(first, last) day checked: the `days` days ending at the newest day any sync attempted."""
    row = conn.execute(
        "SELECT min(window_start), max(window_end) FROM ops.etl_sync_log"
        " WHERE source = %s AND entity = 'ads_insights' AND status <> 'running'", (SOURCE,)
    ).fetchone()
    if row is None or row[1] is None:
        return None
    first, last = row
    return max(first, last - timedelta(days=days - 1)), last


def evaluate_completeness(conn: psycopg.Connection, accounts: Sequence[str], days: int) -> Evaluation:
    window = _window(conn, days)
    if window is None:
        return Evaluation("ERROR", "meta/ads_insights: nothing loaded yet")
    first, last = window
    attempts = {
        (scope, day): (status, processed, error)
        for scope, day, status, processed, error in conn.execute(
            "SELECT DISTINCT ON (scope, window_start) scope, window_start, status, records_processed, error"
            " FROM ops.etl_sync_log WHERE source = %s AND entity = 'ads_insights' AND status <> 'running'"
            " AND window_start = window_end AND window_start BETWEEN %s AND %s"
            " ORDER BY scope, window_start, finished_at DESC, id DESC", (SOURCE, first, last)
        ).fetchall()
    }
    stored = {
        (account, day): (ad_rows, impressions)
        for account, day, ad_rows, impressions in conn.execute(
            "SELECT coalesce(a.account_id, i.account_id), coalesce(a.date, i.date), coalesce(i.n, 0),"
            " coalesce(a.impressions, 0)"
            " FROM (SELECT * FROM raw_meta.account_insights WHERE date BETWEEN %(f)s AND %(l)s) a"
            " FULL JOIN (SELECT account_id, date, count(*) AS n FROM raw_meta.ads_insights"
            "            WHERE date BETWEEN %(f)s AND %(l)s GROUP BY account_id, date) i"
            " ON a.account_id = i.account_id AND a.date = i.date", {"f": first, "l": last}
        ).fetchall()
    }
    problems: dict[str, str] = {}
    checked = 0
    for account in accounts:
        for offset in range((last - first).days + 1):
            day = first + timedelta(days=offset)
            checked += 1
            label = f"{account} {day}"
            status, processed, error = attempts.get((account, day), (None, 0, None))
            ad_rows, impressions = stored.get((account, day), (0, 0))
            if status is None:
                problems[label] = "never loaded"
            elif status != "success":
                problems[label] = f"latest load failed: {(error or '')[:200]}"
            elif ad_rows != processed:
                problems[label] = f"sync log says {processed} ad rows were loaded, the table holds {ad_rows}"
            elif impressions > 0 and ad_rows == 0:
                problems[label] = f"account totals report {impressions} impressions but there are no ad rows"
    metadata = {"first_day": first.isoformat(), "last_day": last.isoformat(), "account_days_checked": checked,
                "incomplete": len(problems),
                "incomplete_account_days": dg.MetadataValue.json(dict(list(sorted(problems.items()))[:MAX_LISTED]))}
    if problems:
        sample = "; ".join(f"{k}: {v}" for k, v in list(sorted(problems.items()))[:3])
        return Evaluation("ERROR", f"meta/ads_insights: {len(problems)} incomplete account-day(s) between {first} and "
                                   f"{last}, e.g. {sample}", metadata)
    return Evaluation(None, f"meta/ads_insights: {checked} account-days complete ({first}..{last})", metadata)


def _recent_since(conn: psycopg.Connection, days: int) -> date | None:
    newest = conn.execute("SELECT max(date) FROM raw_meta.account_insights").fetchone()[0]
    return newest - timedelta(days=days - 1) if newest else None


def _pulled_while_open(conn: psycopg.Connection, since: date, zones: Mapping[str, str]) -> set[tuple[str, date]]:
    """The account-days whose latest successful pull started before the day was over in the account's time zone:
    their spend was still accruing, so the account total and the ad rows, read minutes apart (longer when a
    throttle is waited out between them), may differ. The next pull after the day ends settles them."""
    latest = conn.execute(
        "SELECT DISTINCT ON (scope, window_start) scope, window_start, started_at FROM ops.etl_sync_log"
        " WHERE source = %s AND entity = 'ads_insights' AND status = 'success' AND window_start = window_end"
        " AND window_start >= %s ORDER BY scope, window_start, started_at DESC", (SOURCE, since)).fetchall()
    return {(account, day) for account, day, started in latest
            if account in zones and started.astimezone(ZoneInfo(zones[account])).date() <= day}


def evaluate_reconciliation(conn: psycopg.Connection, days: int, zones: Mapping[str, str]) -> Evaluation:
    """`zones`: account id -> its time zone (a day still open when pulled is not judged, see _pulled_while_open)."""
    since = _recent_since(conn, days)
    if since is None:
        return Evaluation(None, "meta/ads_insights: no account totals loaded yet")
    still_open = _pulled_while_open(conn, since, zones)
    rows = conn.execute(
        "SELECT a.account_id, a.date, a.currency, a.spend, coalesce(sum(i.spend), 0), count(i.ad_id)"
        " FROM raw_meta.account_insights a LEFT JOIN raw_meta.ads_insights i"
        "   ON i.account_id = a.account_id AND i.date = a.date"
        " WHERE a.date >= %s GROUP BY a.account_id, a.date, a.currency, a.spend ORDER BY a.account_id, a.date",
        (since,),
    ).fetchall()
    off: dict[str, dict] = {}
    for account, day, currency, account_spend, ad_spend, ad_rows in rows:
        if (account, day) in still_open:
            continue
        tolerance = ROUNDING_BASE + ROUNDING_PER_ROW * ad_rows
        difference = (account_spend or Decimal(0)) - ad_spend
        if abs(difference) > tolerance:
            off[f"{account} {day}"] = {"account_spend": str(account_spend), "sum_of_ads": str(ad_spend),
                                       "difference": str(difference), "tolerance": str(tolerance),
                                       "currency": currency}
    metadata = {"since": since.isoformat(), "account_days": len(rows), "still_open": len(still_open),
                "mismatches": len(off),
                "mismatched": dg.MetadataValue.json(dict(list(off.items())[:MAX_LISTED]))}
    if off:
        worst = max(off.items(), key=lambda kv: abs(Decimal(kv[1]["difference"])))
        return Evaluation("ERROR", f"meta/ads_insights: ad-level spend does not add up to the account total on "
                                   f"{len(off)} account-day(s); worst {worst[0]}: account {worst[1]['account_spend']} "
                                   f"vs ads {worst[1]['sum_of_ads']} {worst[1]['currency']}", metadata)
    return Evaluation(None, f"meta/ads_insights: spend reconciles with account totals on {len(rows)} account-days",
                      metadata)


def evaluate_ads_known(conn: psycopg.Connection, days: int) -> Evaluation:
    since = _recent_since(conn, days)
    if since is None:
        return Evaluation(None, "meta/ads_insights: no insights loaded yet")
    unknown = conn.execute(
        "SELECT i.ad_id, count(*) FROM raw_meta.ads_insights i"
        " WHERE i.date >= %s AND NOT EXISTS (SELECT 1 FROM raw_meta.ads a WHERE a.id = i.ad_id)"
        " GROUP BY i.ad_id ORDER BY i.ad_id", (since,),
    ).fetchall()
    metadata = {"since": since.isoformat(), "unknown_ads": len(unknown),
                "sample": dg.MetadataValue.json([ad for ad, _ in unknown[:MAX_LISTED]])}
    if unknown:
        rows = sum(n for _, n in unknown)
        return Evaluation("WARN", f"meta/ads_insights: {len(unknown)} ad(s) in {rows} insights row(s) are not in "
                                  "meta/ads yet (expected briefly between hourly hierarchy runs)", metadata)
    return Evaluation(None, "meta/ads_insights: every ad is known to meta/ads", metadata)


def evaluate_spend_non_negative(conn: psycopg.Connection, days: int) -> Evaluation:
    since = _recent_since(conn, days)
    if since is None:
        return Evaluation(None, "meta/ads_insights: no insights loaded yet")
    negative = conn.execute(
        "SELECT account_id, date, ad_id, spend FROM raw_meta.ads_insights WHERE date >= %(s)s AND spend < 0"
        " UNION ALL SELECT account_id, date, NULL, spend FROM raw_meta.account_insights"
        " WHERE date >= %(s)s AND spend < 0 ORDER BY 1, 2", {"s": since},
    ).fetchall()
    metadata = {"since": since.isoformat(), "negative_rows": len(negative),
                "sample": dg.MetadataValue.json([f"{a} {d} {ad or 'account'}: {s}" for a, d, ad, s in negative[:MAX_LISTED]])}
    if negative:
        return Evaluation("ERROR", f"meta/ads_insights: {len(negative)} row(s) with negative spend", metadata)
    return Evaluation(None, "meta/ads_insights: no negative spend", metadata)


def evaluate_purchases_mapped(conn: psycopg.Connection, days: int) -> Evaluation:
    since = _recent_since(conn, days)
    if since is None:
        return Evaluation(None, "meta/ads_insights: no insights loaded yet")
    # account-day totals hold the same actions as their ad rows, in one row per day
    unmapped = conn.execute(
        "SELECT i.account_id, a->>'action_type', count(DISTINCT i.date), min(i.date), max(i.date)"
        " FROM raw_meta.account_insights i, jsonb_array_elements(coalesce(i.payload->'actions', '[]')) a"
        " WHERE i.date >= %s AND i.conversion_action_type IS NULL AND a->>'action_type' ILIKE '%%purchase%%'"
        " GROUP BY 1, 2 ORDER BY 1, 2", (since,),
    ).fetchall()
    found: dict[str, dict] = {}
    for account, action_type, n_days, first, last in unmapped:
        entry = found.setdefault(account, {"action_types": [], "days": 0, "first_day": str(first), "last_day": str(last)})
        entry["action_types"].append(action_type)
        entry["days"] = max(entry["days"], n_days)
    metadata = {"since": since.isoformat(), "accounts_unmapped": len(found),
                "unmapped": dg.MetadataValue.json(found)}
    if found:
        sample = "; ".join(f"{a} reports {', '.join(e['action_types'])} on {e['days']} day(s)"
                           for a, e in list(found.items())[:3])
        return Evaluation("WARN", f"meta/ads_insights: purchase-like actions arrived but none is mapped, so their "
                                  f"conversions and purchase value load as 0: {sample}. Add the type to "
                                  "meta.purchase_action_types (or the account's own list) in adpipeline.yaml and "
                                  "rerun the days.", metadata)
    return Evaluation(None, "meta/ads_insights: every purchase-like action is mapped to conversions", metadata)


def _data_check(name: str, description: str, evaluate: Callable[[psycopg.Connection, datetime], Evaluation],
                *, blocking: bool, clock: Callable[[], datetime], scheduled: bool = False) -> dg.AssetChecksDefinition:
    return build_check(ADS_INSIGHTS, name, description, evaluate, clock=clock, blocking=blocking, scheduled=scheduled)


def build_checks(config: SourcesConfig, *, clock: Callable[[], datetime] = pipeline_clock.now) -> list[dg.AssetChecksDefinition]:
    accounts = [a.id for a in config.meta.accounts]
    zones = {a.id: a.timezone for a in config.meta.accounts}
    days = config.meta.attribution_window_days
    feed = {"source": SOURCE, "scopes": accounts, "cron": config.cadences.meta_hourly,
            "timezone": config.reporting_timezone, "threshold": thresholds.HOURLY_FEED_LATENESS, "clock": clock}
    checks: list[dg.AssetChecksDefinition] = []
    for key, entity in [(AD_ACCOUNTS, "ad_accounts"), *((k, e) for e, k in HIERARCHY_KEYS.items()),
                        (ADS_INSIGHTS, "ads_insights")]:
        checks.append(lateness_check(key, entity=entity, **feed))
        checks.append(all_scopes_loaded_check(key, source=SOURCE, entity=entity, scopes=accounts, clock=clock,
                                              per_day_for=days if entity == "ads_insights" else None))
    checks += [
        _data_check("completeness", f"Every (account, day) of the last {days} days loaded has a successful sync, "
                    "the tables hold exactly the rows it loaded, and days with account-level delivery have ad rows.",
                    lambda conn, now: evaluate_completeness(conn, accounts, days), blocking=False, clock=clock,
                    scheduled=True),  # a failed day stays red every 15 minutes until a rerun loads it
        _data_check("spend_reconciles", f"Account-level spend equals the sum of ad-level spend per account and day "
                    f"(last {days} days), within cent rounding. Blocks downstream models.",
                    lambda conn, now: evaluate_reconciliation(conn, days, zones), blocking=True, clock=clock),
        _data_check("ads_known", "Every insights row's ad is known to meta/ads (WARN: new ads may arrive between "
                    "hourly hierarchy runs).", lambda conn, now: evaluate_ads_known(conn, days), blocking=False,
                    clock=clock),
        _data_check("purchases_mapped", "Purchase-like actions are read as conversions: WARN when an account-day "
                    "reports purchase action types none of which is in its purchase_action_types (adpipeline.yaml).",
                    lambda conn, now: evaluate_purchases_mapped(conn, days), blocking=False, clock=clock),
        _data_check("spend_non_negative", "No negative spend at ad or account level. Blocks downstream models.",
                    lambda conn, now: evaluate_spend_non_negative(conn, days), blocking=True, clock=clock),
    ]
    return checks
