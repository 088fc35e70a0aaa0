"""dbt models refreshed after their sources land.

A run-status sensor watches successful extraction runs and requests the matching dbt run (a second one does
the same for failed runs from what they did materialize: the per-scope runner fails a step when any scope
failed, yet records the healthy scopes' materializations):
  - Meta insights over a partition range (hourly: yesterday+today; daily: the 28-day restatement) ->
    the Meta daily models over the SAME range, in one run, so restated days are rebuilt too (eager
    automation would only target the latest partition);
  - a GA4 (day, property) run -> the GA4 daily models for that day;
  - anything feeding the unpartitioned models (Meta hierarchy, Breezeway) -> those models, at most once
    per hour (run keys deduplicate).
dbt runs one at a time (pool `dbt`), so a burst of source runs queues dbt runs instead of overlapping.
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from adpipeline import clock
from adpipeline.conventions import LIGHT_EXECUTOR, api_tags

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def build_automation(meta_daily: dg.AssetsDefinition, ga4_daily: dg.AssetsDefinition,
                     models: dg.AssetsDefinition) -> tuple[list, list[dg.SensorDefinition]]:
    meta_job = dg.define_asset_job("dbt_meta_daily_job", selection=[meta_daily], executor_def=LIGHT_EXECUTOR,
                                   description="dbt models on Meta insights for a partition range.",
                                   tags=api_tags("dbt"))
    ga4_job = dg.define_asset_job("dbt_ga4_daily_job", selection=[ga4_daily], executor_def=LIGHT_EXECUTOR,
                                  description="dbt models on GA4 reports for one day.",
                                  tags=api_tags("dbt"))
    models_job = dg.define_asset_job("dbt_models_job", selection=[models], executor_def=LIGHT_EXECUTOR,
                                     description="Unpartitioned dbt models (dimensions, reservations).",
                                     tags=api_tags("dbt"))
    meta_sources = {key for key in meta_daily.dependency_keys if key not in meta_daily.keys}
    ga4_sources = {key for key in ga4_daily.dependency_keys if key not in ga4_daily.keys}
    model_sources = {key for key in models.dependency_keys if key not in models.keys}

    def rebuilds(run_id: str, touched: set[dg.AssetKey], meta_range: tuple[str, str] | None,
                 ga4_days: list[str]) -> list[dg.RunRequest]:
        requests = []
        if touched & meta_sources and meta_range:
            requests.append(dg.RunRequest(run_key=f"meta:{run_id}", job_name=meta_job.name,
                                          tags={RANGE_START: meta_range[0], RANGE_END: meta_range[1]}))
        if touched & ga4_sources:
            requests += [dg.RunRequest(run_key=f"ga4:{day}:{run_id}", job_name=ga4_job.name, partition_key=day)
                         for day in ga4_days]
        if touched & model_sources:
            hour = int(clock.system_now().timestamp() // 3600)  # one rebuild per hour however many source runs finish
            requests.append(dg.RunRequest(run_key=f"models:{hour}", job_name=models_job.name))
        return requests

    @dg.run_status_sensor(name="marts_after_sources", run_status=dg.DagsterRunStatus.SUCCESS,
                          request_jobs=[meta_job, ga4_job, models_job], default_status=dg.DefaultSensorStatus.RUNNING,
                          minimum_interval_seconds=60,
                          description="After a successful extraction run, rebuilds the dbt models on exactly the "
                                      "partitions it loaded (Meta ranges, GA4 days) and the unpartitioned models.")
    def marts_after_sources(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        tags = run.tags
        start = tags.get(RANGE_START) or tags.get("dagster/partition")
        day = tags.get("dagster/partition/date")
        requests = rebuilds(run.run_id, set(run.asset_selection or []), (start, tags.get(RANGE_END) or start)
                            if start else None, [day] if day else [])
        return requests or dg.SkipReason(f"run {run.run_id[:8]} feeds no dbt model")

    @dg.run_status_sensor(name="marts_after_partial_sources", run_status=dg.DagsterRunStatus.FAILURE,
                          request_jobs=[meta_job, ga4_job, models_job], default_status=dg.DefaultSensorStatus.RUNNING,
                          minimum_interval_seconds=60,
                          description="After a failed extraction run (some scopes failed, the healthy ones committed: "
                                      "warehouse/scopes.py), rebuilds the dbt models on what it did materialize.")
    def marts_after_partial_sources(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        records = context.instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        done = [(m.asset_key, m.partition) for m in (r.event_log_entry.asset_materialization for r in records) if m]
        meta_days = sorted(str(p) for key, p in done if key in meta_sources and p)
        # a GA4 partition is "date|property": the day is the part that is a date
        ga4_days = sorted({part for key, p in done if key in ga4_sources and p for part in str(p).split("|")
                           if _is_day(part)})
        requests = rebuilds(run.run_id, {key for key, _ in done}, (meta_days[0], meta_days[-1]) if meta_days else None,
                            ga4_days)
        return requests or dg.SkipReason(f"failed run {run.run_id[:8]} materialized nothing a dbt model reads")

    return [meta_job, ga4_job, models_job], [marts_after_sources, marts_after_partial_sources]


def _is_day(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10
