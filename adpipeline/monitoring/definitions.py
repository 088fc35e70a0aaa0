"""Monitoring slice: the checks-only job and its schedule, the alerting sensors, the watchdog, retention.

It is built from the source slices' Definitions because it watches them: the checks-only job selects
their standalone lateness/token/all-scopes checks, and the watchdog expects their schedules and sensors.
"""

from __future__ import annotations

import dagster as dg

from adpipeline.config import SourcesConfig
from adpipeline.conventions import LIGHT_EXECUTOR, URGENT_RUN_TAGS
from adpipeline.monitoring.checks import SCHEDULED
from adpipeline.monitoring.health import expected_instigators
from adpipeline.monitoring.retention import purge_ops_history_job
from adpipeline.monitoring.sensors import (
    alert_delivery_sensor,
    check_alert_sensor,
    freshness_alert_sensor,
    run_failure_alert_sensor,
    run_recovery_alert_sensor,
    watchdog_sensor,
)

CHECKS_CRON = "*/15 * * * *"
PURGE_CRON = "45 3 * * *"


def monitoring_check_keys(sources: dg.Definitions) -> list[dg.AssetCheckKey]:
    """The checks that declare themselves scheduled (`SCHEDULED` in their spec's metadata): re-evaluated every
    15 minutes even when nothing materializes, so a stopped pipeline turns red by itself."""
    keys = {spec.key for checks in sources.asset_checks or [] for spec in checks.check_specs
            if spec.metadata.get(SCHEDULED)}
    return sorted(keys, key=lambda k: k.to_user_string())


def build_defs(sources: dg.Definitions, config: SourcesConfig) -> dg.Definitions:
    tz = config.reporting_timezone
    jobs: list = [purge_ops_history_job]
    schedules = [dg.ScheduleDefinition(name="purge_ops_history", job=purge_ops_history_job, cron_schedule=PURGE_CRON,
                                       execution_timezone=tz, default_status=dg.DefaultScheduleStatus.RUNNING,
                                       description="Daily retention of ops.etl_sync_log and ops.alerts.")]
    check_keys = monitoring_check_keys(sources)
    if check_keys:
        checks_job = dg.define_asset_job(
            "monitoring_checks_job", selection=dg.AssetSelection.checks(*check_keys),
            description="Re-evaluates lateness, token and all-scopes-loaded checks without materializing anything.",
            tags=URGENT_RUN_TAGS, executor_def=LIGHT_EXECUTOR,
        )
        jobs.append(checks_job)
        schedules.append(dg.ScheduleDefinition(
            name="monitoring_checks", job=checks_job, cron_schedule=CHECKS_CRON, execution_timezone=tz,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description="Every 15 minutes: lateness and token checks turn red even when nothing runs.",
        ))
    alerts = config.alerts
    alerting = [check_alert_sensor(alerts), freshness_alert_sensor(alerts), run_failure_alert_sensor(alerts),
                run_recovery_alert_sensor(alerts), alert_delivery_sensor(alerts)]
    own = dg.Definitions(jobs=jobs, schedules=schedules, sensors=alerting)
    expected = expected_instigators(dg.Definitions.merge(sources, own))
    watchdog = watchdog_sensor(expected, alerts)
    return dg.Definitions.merge(own, dg.Definitions(sensors=[watchdog]))
