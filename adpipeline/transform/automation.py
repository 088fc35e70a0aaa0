"""dbt models refreshed after their sources land.

A run-status sensor watches successful extraction runs and requests the matching dbt run:
  - Meta insights over a partition range (hourly: yesterday+today; daily: the 28-day restatement) ->
    the Meta daily models over the SAME range, in one run, so restated days are rebuilt too (eager
    automation would only target the latest partition);
  - a GA4 (day, property) run -> the GA4 daily models for that day;
  - anything feeding the unpartitioned models (Meta hierarchy, Breezeway) -> those models, at most once
    per hour (run keys deduplicate).
dbt runs one at a time (pool `dbt`), so a burst of source runs queues dbt runs instead of overlapping.
"""

from __future__ import annotations


import dagster as dg

from adpipeline import clock
from adpipeline.conventions import LIGHT_EXECUTOR

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def build_automation(meta_daily: dg.AssetsDefinition, ga4_daily: dg.AssetsDefinition,
                     models: dg.AssetsDefinition) -> tuple[list, dg.SensorDefinition]:
    meta_job = dg.define_asset_job("dbt_meta_daily_job", selection=[meta_daily], executor_def=LIGHT_EXECUTOR,
                                   description="dbt models on Meta insights for a partition range.")
    ga4_job = dg.define_asset_job("dbt_ga4_daily_job", selection=[ga4_daily], executor_def=LIGHT_EXECUTOR,
                                  description="dbt models on GA4 reports for one day.")
    models_job = dg.define_asset_job("dbt_models_job", selection=[models], executor_def=LIGHT_EXECUTOR,
                                     description="Unpartitioned dbt models (dimensions, reservations).")
    meta_sources = {key for key in meta_daily.dependency_keys if key not in meta_daily.keys}
    ga4_sources = {key for key in ga4_daily.dependency_keys if key not in ga4_daily.keys}
    model_sources = {key for key in models.dependency_keys if key not in models.keys}

    @dg.run_status_sensor(name="marts_after_sources", run_status=dg.DagsterRunStatus.SUCCESS,
                          request_jobs=[meta_job, ga4_job, models_job], default_status=dg.DefaultSensorStatus.RUNNING,
                          minimum_interval_seconds=60,
                          description="After a successful extraction run, rebuilds the dbt models on exactly the "
                                      "partitions it loaded (Meta ranges, GA4 days) and the unpartitioned models.")
    def marts_after_sources(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        selected = set(run.asset_selection or [])
        tags = run.tags
        requests = []
        if selected & meta_sources:
            start = tags.get(RANGE_START) or tags.get("dagster/partition")
            end = tags.get(RANGE_END) or start
            if start:
                requests.append(dg.RunRequest(run_key=f"meta:{run.run_id}", job_name=meta_job.name,
                                              tags={RANGE_START: start, RANGE_END: end}))
        if selected & ga4_sources and tags.get("dagster/partition/date"):
            day = tags["dagster/partition/date"]
            requests.append(dg.RunRequest(run_key=f"ga4:{day}:{run.run_id}", job_name=ga4_job.name, partition_key=day))
        if selected & model_sources:
            hour = int(clock.system_now().timestamp() // 3600)  # one rebuild per hour however many source runs finish
            requests.append(dg.RunRequest(run_key=f"models:{hour}", job_name=models_job.name))
        return requests or dg.SkipReason(f"run {run.run_id[:8]} feeds no dbt model")

    return [meta_job, ga4_job, models_job], marts_after_sources
