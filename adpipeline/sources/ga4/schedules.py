"""GA4 schedule: every 4 hours (config `cadences.ga4`), re-pull today and the trailing restatement days
of every property, because GA4 keeps changing the last ~3 days."""

from __future__ import annotations

import dagster as dg

from adpipeline.config import SourcesConfig
from adpipeline.conventions import LIGHT_EXECUTOR
from adpipeline.sources.ga4.assets import restatement_partition_keys


def build_schedules(config: SourcesConfig, assets: list[dg.AssetsDefinition]) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    job = dg.define_asset_job(
        "ga4_reports_job", selection=dg.AssetSelection.assets(*assets), executor_def=LIGHT_EXECUTOR,
        description="GA4 reports for one (day, property) partition.",
    )

    @dg.schedule(name="ga4_reports", job=job, cron_schedule=config.cadences.ga4,
                 execution_timezone=config.reporting_timezone, default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"Every tick ({config.cadences.ga4}): today and the trailing "
                             f"{config.ga4.restatement_days} days of every property, one run per (day, property).")
    def ga4_reports(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        now = context.scheduled_execution_time
        stamp = now.isoformat()
        return [dg.RunRequest(run_key=f"{stamp}:{key}", partition_key=key)
                for key in restatement_partition_keys(config, now)]

    return job, ga4_reports
