"""Breezeway slice: region-partitioned assets, their checks and the API resource."""

from __future__ import annotations

import dagster as dg

from adpipeline.sources.breezeway import tables
from adpipeline.config import get_config
from adpipeline.sources.breezeway.assets import build_assets
from adpipeline.sources.breezeway.checks import build_checks
from adpipeline.sources.breezeway.resources import BreezewayResource
from adpipeline.sources.breezeway.schedules import build_schedules
from adpipeline.warehouse.definitions import with_tables


def build_defs() -> dg.Definitions:
    config = get_config()
    jobs, schedules = build_schedules(config)
    return with_tables(dg.Definitions(
        assets=build_assets(config),
        jobs=jobs,
        schedules=schedules,
        asset_checks=build_checks(config),
        resources={"breezeway": BreezewayResource()},
    ), tables.ENTITIES)
