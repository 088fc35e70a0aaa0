"""Breezeway checks, all standalone and non-blocking, built from the shared builders:

- lateness against the cadences: reservations hourly (WARN > 2 h, ERROR > 4 h); properties, tasks, people,
  supplies, tags daily (ERROR > 25 h)
- all regions loaded, per entity (ERROR while any region's latest load failed or never ran)
- referential integrity: every reservation's property known; every task's property known and, when the
  task is linked to a reservation, that reservation known
- row-count guard: a full reconciliation that saw far fewer rows than the previous one (WARN below 90 %,
  ERROR below 50 %): a mass disappearance upstream is an incident, not "deletions"
- region token health (ERROR when a region's credentials are refused; WARN when a refresh failed)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import dagster as dg
import psycopg

from adpipeline import clock as pipeline_clock
from adpipeline.config import SourcesConfig
from adpipeline.monitoring import thresholds as T
from adpipeline.monitoring.checks import (
    Evaluation,
    all_scopes_loaded_check,
    build_check,
    lateness_check,
    token_health_check,
)
from adpipeline.sources.breezeway.assets import (
    PEOPLE_KEY,
    PROPERTIES_KEY,
    RESERVATIONS_KEY,
    SUPPLIES_KEY,
    TAGS_KEY,
    TASKS_KEY,
)
from adpipeline.sources.breezeway.auth import PLATFORM
from adpipeline.sources.breezeway.loads import SOURCE
from adpipeline.sources.breezeway.resources import BreezewayResource
from adpipeline.warehouse.tokens import api_origin

ENTITIES: dict[str, dg.AssetKey] = {
    "properties": PROPERTIES_KEY, "reservations": RESERVATIONS_KEY, "tasks": TASKS_KEY, "people": PEOPLE_KEY,
    "supplies": SUPPLIES_KEY, "tags": TAGS_KEY,
}
RESERVATION_WITHOUT_PROPERTY = (
    "SELECT r.region_code, r.property_id FROM raw_breezeway.reservations r WHERE r.region_code = ANY(%(regions)s)"
    " AND r.property_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM raw_breezeway.properties p"
    "   WHERE p.region_code = r.region_code AND p.id = r.property_id)"
)
TASK_WITHOUT_PROPERTY = (
    "SELECT t.region_code, t.property_id FROM raw_breezeway.tasks t WHERE t.region_code = ANY(%(regions)s)"
    " AND t.deleted_at IS NULL AND t.property_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM raw_breezeway.properties p"
    "   WHERE p.region_code = t.region_code AND p.id = t.property_id)"
)
TASK_WITHOUT_RESERVATION = (
    "SELECT t.region_code, t.reservation_id FROM raw_breezeway.tasks t WHERE t.region_code = ANY(%(regions)s)"
    " AND t.deleted_at IS NULL AND t.reservation_id IS NOT NULL AND NOT EXISTS (SELECT 1"
    "   FROM raw_breezeway.reservations r WHERE r.region_code = t.region_code AND r.id = t.reservation_id)"
)


def evaluate_orphans(conn: psycopg.Connection, regions: Sequence[str], what: str,
                     queries: dict[str, str]) -> Evaluation:
    """ERROR when any of `queries` (label -> SELECT region_code, missing_id ...) finds rows."""
    found: dict[str, dict[str, dict]] = {}
    for label, query in queries.items():
        rows = conn.execute(
            f"SELECT region_code, count(*), count(DISTINCT missing), (array_agg(DISTINCT missing ORDER BY missing))[1:10]"
            f" FROM ({query}) AS o(region_code, missing) GROUP BY region_code ORDER BY region_code",
            {"regions": list(regions)}).fetchall()
        for region, n, distinct, sample in rows:
            found.setdefault(label, {})[region] = {"rows": n, "missing": distinct, "sample_missing_ids": sample}
    metadata = {"orphans": dg.MetadataValue.json(found),
                "orphan_rows": sum(r["rows"] for per in found.values() for r in per.values())}
    if found:
        parts = [f"{label} in {region} ({o['rows']} row(s), {o['missing']} missing id(s))"
                 for label, per in found.items() for region, o in per.items()]
        return Evaluation("ERROR", f"{what}: " + "; ".join(parts), metadata)
    return Evaluation(None, f"{what}: every reference is known", metadata)


def evaluate_row_count_guard(conn: psycopg.Connection, entity: str, regions: Sequence[str], what: str) -> Evaluation:
    """Rows seen by each region's latest full reconciliation against the one before it."""
    rows = conn.execute(
        "SELECT scope, records_processed, finished_at FROM (SELECT scope, records_processed, finished_at,"
        "   row_number() OVER (PARTITION BY scope ORDER BY finished_at DESC, id DESC) AS n FROM ops.etl_sync_log"
        "   WHERE source = %s AND entity = %s AND sync_type = 'full' AND status = 'success' AND scope = ANY(%s)) s"
        " WHERE n <= 2 ORDER BY scope, n", (SOURCE, entity, list(regions))).fetchall()
    latest: dict[str, list[int]] = {}
    for scope, processed, _ in rows:
        latest.setdefault(scope, []).append(processed)
    threshold = T.FULL_RECONCILIATION_ROW_RATIO
    severity, per_region, worst = None, {}, []
    for scope, counts in latest.items():
        if len(counts) < 2 or counts[1] == 0:
            per_region[scope] = {"latest": counts[0], "previous": None}
            continue
        ratio = counts[0] / counts[1]
        level = threshold.severity(ratio)
        per_region[scope] = {"latest": counts[0], "previous": counts[1], "ratio": round(ratio, 3), "level": level}
        if level:
            worst.append(f"{scope} {counts[1]} -> {counts[0]} rows ({ratio:.0%})")
            severity = "ERROR" if "ERROR" in (severity, level) else level
    metadata = {"regions": dg.MetadataValue.json(per_region), "warn_below_ratio": threshold.warn,
                "error_below_ratio": threshold.error}
    if severity:
        return Evaluation(severity, f"{what}: the latest full reconciliation saw far fewer rows than the one "
                          f"before: {'; '.join(worst)} (check upstream before trusting the deletions)", metadata)
    return Evaluation(None, f"{what}: row counts of consecutive full reconciliations are stable", metadata)


def build_checks(config: SourcesConfig, *, clock: Callable[[], datetime] = pipeline_clock.now) -> list[dg.AssetChecksDefinition]:
    regions = [r.code for r in config.breezeway.regions]
    tz, cadences = config.reporting_timezone, config.cadences
    checks = [
        lateness_check(RESERVATIONS_KEY, source=SOURCE, entity="reservations", scopes=regions,
                       cron=cadences.breezeway_reservations, timezone=tz, threshold=T.HOURLY_FEED_LATENESS, clock=clock),
        build_check(RESERVATIONS_KEY, "property_known", "ERROR when a reservation references a property that "
                    "raw_breezeway.properties does not have (fetched by id when possible, else flagged here).",
                    lambda conn, now: evaluate_orphans(conn, regions, "breezeway/reservations",
                                                       {"reservations whose property is unknown":
                                                        RESERVATION_WITHOUT_PROPERTY}), clock=clock),
        build_check(TASKS_KEY, "references_known", "ERROR when a live task references a property, or a linked "
                    "reservation, that the warehouse does not have.",
                    lambda conn, now: evaluate_orphans(conn, regions, "breezeway/tasks", {
                        "tasks whose property is unknown": TASK_WITHOUT_PROPERTY,
                        "tasks whose linked reservation is unknown": TASK_WITHOUT_RESERVATION}), clock=clock),
        token_health_check(RESERVATIONS_KEY, platform=PLATFORM, scopes=regions, name="region_token_health",
                           api=lambda: api_origin(BreezewayResource().base_url()), clock=clock),
    ]
    for entity, key in ENTITIES.items():
        if entity != "reservations":
            checks.append(lateness_check(key, source=SOURCE, entity=entity, scopes=regions,
                                         cron=cadences.breezeway_daily, timezone=tz,
                                         threshold=T.DAILY_FEED_LATENESS, clock=clock))
        checks.append(all_scopes_loaded_check(key, source=SOURCE, entity=entity, scopes=regions, clock=clock))
        checks.append(build_check(
            key, "row_count_guard", "Rows seen by the latest full reconciliation against the previous one, per "
            f"region: {T.FULL_RECONCILIATION_ROW_RATIO.limits()} (a mass disappearance upstream, not routine deletions).",
            lambda conn, now, entity=entity: evaluate_row_count_guard(conn, entity, regions, f"breezeway/{entity}"),
            clock=clock))
    return checks
