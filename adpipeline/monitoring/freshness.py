"""Freshness policies for every asset, applied in one place from the cadences and the thresholds table,
so the UI shows the same truth as the lateness checks (ARCHITECTURE, "Thresholds").

Feeds without quiet hours get a time window (WARN/ERROR ages). A feed with quiet hours (Meta, hourly
06:00-22:00) gets a cron policy instead, so the night never shows stale: deadlines every ERROR window
through the active hours (10:00, 14:00, 18:00, 22:00), each requiring a materialization within the
window before it (Dagster requires the window to be no longer than the deadlines' spacing).
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import cache

import dagster as dg

from adpipeline.config import SourcesConfig
from adpipeline.monitoring import thresholds as T
from adpipeline.warehouse.definitions import map_specs

_HOUR_RANGE = re.compile(r"^(\d+) (\d+)-(\d+) \* \* \*$")


@cache  # Dagster validates a cron policy by walking ~1,000 cron ticks (~0.15 s): once per cadence, not per asset
def quiet_hours_policy(cron: str, threshold: T.Threshold, timezone: str) -> dg.FreshnessPolicy:
    """Cron policy for an 'M H1-H2 * * *' cadence: deadlines from H1 + ERROR window to H2."""
    match = _HOUR_RANGE.match(cron)
    window = threshold.error
    if not match:
        return dg.FreshnessPolicy.time_window(fail_window=window, warn_window=threshold.warn)
    minute, first, last = map(int, match.groups())
    step = int(window / timedelta(hours=1))
    hours = list(range(first + step, last + 1, step)) or [last]
    return dg.FreshnessPolicy.cron(deadline_cron=f"{minute} {','.join(map(str, hours))} * * *",
                                   lower_bound_delta=window, timezone=timezone)


def window_policy(threshold: T.Threshold) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(fail_window=threshold.error, warn_window=threshold.warn)


def policy_for(spec: dg.AssetSpec, config: SourcesConfig) -> dg.FreshnessPolicy | None:
    """The policy of one asset, by its key and group (None: left as declared)."""
    key, group = spec.key.to_user_string(), spec.group_name
    tz, cadences = config.reporting_timezone, config.cadences
    if key == "meta/access_token":
        return dg.FreshnessPolicy.time_window(fail_window=T.TOKEN_REFRESH_JOB_GAP.error)
    if group == "meta":
        return quiet_hours_policy(cadences.meta_hourly, T.HOURLY_FEED_LATENESS, tz)
    if key == "breezeway/reservations":
        return window_policy(T.HOURLY_FEED_LATENESS)
    if group == "breezeway":
        return window_policy(T.DAILY_FEED_LATENESS)
    if group == "ga4":
        return window_policy(T.GA4_LATENESS)
    if spec.freshness_policy is None and group is not None:
        # dbt models and anything downstream: at least daily
        return window_policy(T.DAILY_FEED_LATENESS)
    return None


def apply_freshness(defs: dg.Definitions, config: SourcesConfig) -> dg.Definitions:
    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        policy = policy_for(spec, config)
        return dg.apply_freshness_policy(spec, policy) if policy else spec

    return map_specs(defs, apply)
