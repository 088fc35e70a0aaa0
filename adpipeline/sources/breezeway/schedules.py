"""Breezeway schedules: reservations every hour, the other entities daily, one run per region so a
failing region never holds the others back."""

from __future__ import annotations

import dagster as dg

from adpipeline.config import SourcesConfig
from adpipeline.conventions import LIGHT_EXECUTOR, api_tags
from adpipeline.sources.breezeway.assets import (
    PEOPLE_KEY,
    PROPERTIES_KEY,
    RESERVATIONS_KEY,
    SUPPLIES_KEY,
    TAGS_KEY,
    TASKS_KEY,
)

DAILY_KEYS = [PROPERTIES_KEY, TASKS_KEY, PEOPLE_KEY, SUPPLIES_KEY, TAGS_KEY]


def _per_region(name: str, job, cron: str, config: SourcesConfig, description: str) -> dg.ScheduleDefinition:
    regions = [r.code for r in config.breezeway.regions]

    @dg.schedule(name=name, job=job, cron_schedule=cron, execution_timezone=config.reporting_timezone,
                 default_status=dg.DefaultScheduleStatus.RUNNING, description=description)
    def _schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        stamp = context.scheduled_execution_time.isoformat()
        return [dg.RunRequest(run_key=f"{stamp}:{region}", partition_key=region) for region in regions]

    return _schedule


def build_schedules(config: SourcesConfig) -> tuple[list[dg.UnresolvedAssetJobDefinition], list[dg.ScheduleDefinition]]:
    reservations_job = dg.define_asset_job("breezeway_reservations_job", selection=[RESERVATIONS_KEY],
                                           executor_def=LIGHT_EXECUTOR,
                                           description="Breezeway reservations of one region.",
                                           tags=api_tags("breezeway"))
    daily_job = dg.define_asset_job("breezeway_daily_job", selection=DAILY_KEYS, executor_def=LIGHT_EXECUTOR,
                                    description="Breezeway properties, tasks, people, supplies and tags of one region.",
                                    tags=api_tags("breezeway"))
    cadences = config.cadences
    schedules = [
        _per_region("breezeway_reservations", reservations_job, cadences.breezeway_reservations, config,
                    f"Reservations of every region ({cadences.breezeway_reservations}): incremental with overlap, "
                    "weekly full pass."),
        _per_region("breezeway_daily", daily_job, cadences.breezeway_daily, config,
                    f"Properties, tasks, people, supplies and tags of every region ({cadences.breezeway_daily})."),
    ]
    return [reservations_job, daily_job], schedules
