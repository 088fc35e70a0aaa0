"""Meta slice: ad accounts, campaigns, ad sets, ads and daily insights, their checks, the Meta resource."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import dagster as dg

from adpipeline import clock as pipeline_clock
from adpipeline.sources.meta import tables
from adpipeline.config import SourcesConfig, get_config
from adpipeline.sources.meta.assets import build_assets
from adpipeline.sources.meta.auth import build_token_defs
from adpipeline.sources.meta.checks import build_checks
from adpipeline.sources.meta.partitions import daily_partitions
from adpipeline.sources.meta.resources import MetaResource
from adpipeline.sources.meta.schedules import build_schedules
from adpipeline.warehouse.definitions import with_tables


def build_defs(config: SourcesConfig | None = None, *, clock: Callable[[], datetime] = pipeline_clock.now) -> dg.Definitions:
    """`clock` is what the checks take as "now" (tests pass the sandbox's)."""
    config = config or get_config()
    if not config.meta.accounts:
        return dg.Definitions()
    jobs, schedules = build_schedules(config)
    token_asset, token_job, token_schedule, token_checks = build_token_defs(config, clock=clock)
    return with_tables(dg.Definitions(
        assets=[*build_assets(config, daily_partitions(config)), token_asset],
        jobs=[*jobs, token_job],
        schedules=[*schedules, token_schedule],
        asset_checks=[*build_checks(config, clock=clock), *token_checks],
        resources={"meta": MetaResource(api_version=config.meta.api_version,
                                        access_token_env=config.meta.access_token_env)},
    ), tables.ALL)
