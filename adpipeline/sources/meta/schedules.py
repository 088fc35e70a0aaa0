"""Meta schedules, in the reporting time zone: hourly 06:00-22:00 the hierarchy (incremental, cheap) and
the insights of yesterday and today; daily at 02:15 the trailing attribution window as ONE run over the
partition range, so every restated day gets its own materialization."""

from __future__ import annotations

import dagster as dg

from adpipeline.config import SourcesConfig
from adpipeline.conventions import LIGHT_EXECUTOR
from adpipeline.sources.meta.assets import ACCOUNT_INSIGHTS, AD_ACCOUNTS, ADS, ADSETS, ADS_INSIGHTS, CAMPAIGNS
from adpipeline.sources.meta.partitions import hourly_range, range_tags, restatement_range

HIERARCHY = [AD_ACCOUNTS, CAMPAIGNS, ADSETS, ADS]
INSIGHTS = [ADS_INSIGHTS, ACCOUNT_INSIGHTS]


def build_schedules(config: SourcesConfig) -> tuple[list, list[dg.ScheduleDefinition]]:
    hierarchy_job = dg.define_asset_job("meta_hierarchy_job", selection=HIERARCHY, executor_def=LIGHT_EXECUTOR,
                                        description="Meta ad accounts, campaigns, ad sets and ads (incremental).")
    insights_job = dg.define_asset_job("meta_insights_job", selection=INSIGHTS, executor_def=LIGHT_EXECUTOR,
                                       description="Meta daily insights for a partition range, in one run.")
    tz, cadences = config.reporting_timezone, config.cadences
    window = config.meta.attribution_window_days

    @dg.schedule(name="meta_hierarchy_hourly", job=hierarchy_job, cron_schedule=cadences.meta_hourly,
                 execution_timezone=tz, default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"{cadences.meta_hourly} ({tz}): ad accounts, campaigns, ad sets, ads (incremental).")
    def meta_hierarchy_hourly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        return dg.RunRequest(run_key=context.scheduled_execution_time.isoformat())

    @dg.schedule(name="meta_insights_hourly", job=insights_job, cron_schedule=cadences.meta_hourly,
                 execution_timezone=tz, default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"{cadences.meta_hourly} ({tz}): yesterday's and today's insights in one run.")
    def meta_insights_hourly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        keys = hourly_range(context.scheduled_execution_time, tz)
        return dg.RunRequest(run_key=context.scheduled_execution_time.isoformat(), tags=range_tags(keys))

    @dg.schedule(name="meta_restatement", job=insights_job, cron_schedule=cadences.meta_restatement,
                 execution_timezone=tz, default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"{cadences.meta_restatement} ({tz}): re-pull the trailing {window} days (Meta restates "
                             "conversions for up to 28 days) as one run; each (account, day) is replaced.")
    def meta_restatement(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        keys = restatement_range(context.scheduled_execution_time, tz, window)
        return dg.RunRequest(run_key=context.scheduled_execution_time.isoformat(), tags=range_tags(keys))

    return [hierarchy_job, insights_job], [meta_hierarchy_hourly, meta_insights_hourly, meta_restatement]
