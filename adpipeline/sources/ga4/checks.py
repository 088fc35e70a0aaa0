"""GA4 asset checks, all standalone and non-blocking, from the shared builders:

per report: lateness against the GA4 cadence (WARN > 12 h, ERROR > 24 h), all properties loaded (ERROR),
data lost to `(other)` in the recent days (WARN); on the first report (they are per property, not per
report): daily quota headroom (WARN below 20% left) and the health of the GA4 credentials' token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg

from adpipeline.config import SourcesConfig
from adpipeline.monitoring import thresholds as T
from adpipeline.monitoring.checks import Evaluation, all_scopes_loaded_check, build_check, lateness_check, token_health_check
from adpipeline.sources.ga4.assets import SOURCE
from adpipeline.sources.ga4.auth import PLATFORM
from adpipeline.sources.ga4.client import PACIFIC
from adpipeline.sources.ga4.reports import REPORT_METADATA, Report
from adpipeline.sources.ga4.resources import default_api_url
from adpipeline.warehouse.tokens import api_origin

OTHER_ROW_WINDOW_DAYS = 7  # how far back (report days) the (other) check looks


def asset_key(report: Report) -> dg.AssetKey:
    return dg.AssetKey(["ga4", report.name])


# -- quota headroom --------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuotaReading:
    consumed: int
    remaining: int
    observed_at: datetime


def latest_quota(conn: psycopg.Connection) -> dict[str, QuotaReading]:
    rows = conn.execute(
        f"SELECT DISTINCT ON (property_id) property_id, tokens_per_day_consumed, tokens_per_day_remaining,"
        f" observed_at FROM {REPORT_METADATA.qualified} WHERE tokens_per_day_remaining IS NOT NULL"
        f" ORDER BY property_id, observed_at DESC"
    ).fetchall()
    return {pid: QuotaReading(consumed or 0, remaining, at) for pid, consumed, remaining, at in rows}


def last_pacific_midnight(now: datetime) -> datetime:
    local = now.astimezone(PACIFIC)
    return datetime.combine(local.date(), datetime.min.time(), tzinfo=PACIFIC)


def evaluate_quota_headroom(readings: dict[str, QuotaReading], *, scopes: Sequence[str], now: datetime,
                            tokens_per_day: int = 200_000,
                            threshold: T.Threshold = T.GA4_QUOTA_HEADROOM) -> Evaluation:
    """Share of each property's daily tokens left at its latest reading: remaining / the daily limit
    (`consumed` is what that one request cost, not a running total); a reading from before the last
    midnight Pacific no longer counts (the daily quota has reset since)."""
    reset = last_pacific_midnight(now)
    severity, per_scope, low = None, {}, []
    for scope in scopes:
        reading = readings.get(scope)
        if reading is None:
            per_scope[scope] = {"state": "no quota reading yet"}
            continue
        if reading.observed_at < reset:
            per_scope[scope] = {"state": "daily quota reset since the last reading",
                                "observed_at": reading.observed_at.isoformat()}
            continue
        total = tokens_per_day
        share = min(1.0, reading.remaining / total)
        level = threshold.severity(share)
        per_scope[scope] = {"share_left": round(share, 4), "tokens_remaining": reading.remaining,
                            "tokens_last_request": reading.consumed, "tokens_per_day": total, "observed_at": reading.observed_at.isoformat()}
        if level:
            severity = level
            low.append(f"{scope} has {share:.1%} of its daily tokens left ({reading.remaining} of {total})")
    metadata = {"warn_below_share": threshold.warn, "scopes": dg.MetadataValue.json(per_scope)}
    if low:
        return Evaluation(severity, f"ga4 quota headroom: {'; '.join(low)}; WARN below {threshold.warn:.0%} "
                                    "(requests slow down, then stop until midnight Pacific)", metadata)
    return Evaluation(None, f"ga4 quota headroom: every property has at least {threshold.warn:.0%} of its daily "
                            "tokens left", metadata)


# -- data lost to (other) --------------------------------------------------------------------------

@dataclass(frozen=True)
class OtherRowLoss:
    property_id: str
    report_date: date
    other_rows: int
    other_share: float


def other_row_losses(conn: psycopg.Connection, report: str, since: date) -> list[OtherRowLoss]:
    rows = conn.execute(
        f"SELECT property_id, report_date, other_rows, other_share FROM {REPORT_METADATA.qualified}"
        f" WHERE report = %s AND report_date >= %s AND data_loss_from_other_row ORDER BY property_id, report_date",
        (report, since),
    ).fetchall()
    return [OtherRowLoss(pid, day, n or 0, float(share or 0)) for pid, day, n, share in rows]


def evaluate_other_rows(losses: Sequence[OtherRowLoss], *, what: str, first_metric: str, since: date) -> Evaluation:
    metadata = {"since": since.isoformat(), "days_with_data_loss": len(losses),
                "losses": dg.MetadataValue.json({f"{x.property_id} {x.report_date}": {
                    "other_rows": x.other_rows, f"share_of_{first_metric}": x.other_share} for x in losses})}
    if not losses:
        return Evaluation(None, f"{what}: no data lost to (other) since {since}", metadata)
    worst = max(losses, key=lambda x: x.other_share)
    return Evaluation("WARN", f"{what}: GA4 folded rows into (other) (cardinality limit) on {len(losses)} "
                              f"property-day(s) since {since}; worst {worst.property_id} {worst.report_date} with "
                              f"{worst.other_share:.1%} of {first_metric}. The rows are kept, flagged is_other; "
                              "narrow the report's dimensions to lose less", metadata)


# -- all checks ------------------------------------------------------------------------------------

def build_checks(config: SourcesConfig, reports: Sequence[Report], *, clock=None) -> list[dg.AssetChecksDefinition]:
    scopes = [p.id for p in config.ga4.properties]
    zone = ZoneInfo(config.reporting_timezone)
    extra = {"clock": clock} if clock else {}
    checks: list[dg.AssetChecksDefinition] = []
    for report in reports:
        key = asset_key(report)
        checks.append(lateness_check(key, source=SOURCE, entity=report.name, scopes=scopes, cron=config.cadences.ga4,
                                     timezone=config.reporting_timezone, threshold=T.GA4_LATENESS, **extra))
        # per (property, day) over the days every tick re-pulls: a failed day is not masked by a later success
        checks.append(all_scopes_loaded_check(key, source=SOURCE, entity=report.name, scopes=scopes,
                                              per_day_for=config.ga4.restatement_days, **extra))

        def other_rows(conn, now, report=report):
            since = now.astimezone(zone).date() - timedelta(days=OTHER_ROW_WINDOW_DAYS)
            first = report.metrics[0].name if report.metrics else "rows"
            return evaluate_other_rows(other_row_losses(conn, report.name, since), what=f"ga4/{report.name}",
                                       first_metric=first, since=since)

        checks.append(build_check(key, "other_row_data_loss", f"WARN when GA4 folded rows into (other) in the last "
                                  f"{OTHER_ROW_WINDOW_DAYS} days (dataLossFromOtherRow); the rows are kept, flagged.",
                                  other_rows, **extra))
    first = asset_key(reports[0])
    checks.append(build_check(
        first, "quota_headroom",
        f"Share of its daily GA4 tokens a property has left: {T.GA4_QUOTA_HEADROOM.limits()} "
        "(latest propertyQuota reading; the quota resets at midnight Pacific).",
        lambda conn, now: evaluate_quota_headroom(latest_quota(conn), scopes=scopes, now=now,
                                                  tokens_per_day=config.ga4.tokens_per_day), **extra))
    checks.append(token_health_check(first, platform=PLATFORM, scopes=[config.ga4.credentials_env],
                                     api=lambda: api_origin(default_api_url()), **extra))
    return checks
