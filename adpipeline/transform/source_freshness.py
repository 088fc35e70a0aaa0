"""dbt source freshness as Dagster asset checks (dagster-dbt has no native integration: dagster issue #29786).

One `dbt_source_freshness` check per dbt source table that declares freshness, on the extraction asset the
source maps to (`meta: {dagster: {asset_key: ...}}`). It measures what `dbt source freshness` measures, the age
of max(loaded_at_field) under the source's own thresholds (which mirror monitoring/thresholds.py; a test keeps
them equal), in one query instead of a dbt process, and it discounts the feed's quiet hours like the lateness
checks. It is the signal "loads succeed but no new rows land"; lateness (ops.etl_sync_log) is "loads succeed".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt.dbt_manifest import validate_manifest

from adpipeline.config import SourcesConfig
from adpipeline.monitoring import thresholds as T
from adpipeline.monitoring.cadence import feed_cron
from adpipeline.monitoring.checks import source_freshness_check

_PERIODS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def _limit(rule: Mapping[str, Any] | None) -> timedelta | None:
    if not rule or not rule.get("count"):
        return None
    return rule["count"] * _PERIODS[rule["period"]]


def freshness_threshold(source: Mapping[str, Any]) -> T.Threshold | None:
    """The dbt source's freshness config as a threshold (None: the table declares no freshness)."""
    freshness = source.get("freshness") or {}
    warn, error = _limit(freshness.get("warn_after")), _limit(freshness.get("error_after"))
    if warn is None and error is None:
        return None
    return T.Threshold(f"dbt_source_freshness:{source['unique_id']}", "age", warn, error,
                       "dbt source freshness config (mirrors the thresholds table)")


def build_source_freshness_checks(manifest: Path, config: SourcesConfig) -> list[dg.AssetChecksDefinition]:
    checks = []
    for source in validate_manifest(manifest)["sources"].values():  # dagster-dbt's cached parse, shared
        threshold = freshness_threshold(source)
        if threshold is None:
            continue
        asset_key = (source.get("meta") or {}).get("dagster", {}).get("asset_key")
        if not asset_key or not source.get("loaded_at_field"):
            raise ValueError(f"dbt source {source['unique_id']} declares freshness but no loaded_at_field or "
                             "meta.dagster.asset_key: add both in its _*__sources.yml")
        checks.append(source_freshness_check(
            asset_key, schema=source["schema"], table=source["identifier"], loaded_at_field=source["loaded_at_field"],
            threshold=threshold, cron=feed_cron(asset_key, config), timezone=config.reporting_timezone,
            where=(source["freshness"] or {}).get("filter")))
    return checks
