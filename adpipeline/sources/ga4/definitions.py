"""GA4 slice: report assets (day x property), their checks and the GA4 resource."""

from __future__ import annotations

import dagster as dg

from adpipeline.config import SourcesConfig, get_config
from adpipeline.sources.ga4.assets import build_report_asset, ga4_partitions
from adpipeline.sources.ga4.checks import build_checks
from adpipeline.sources.ga4.reports import configured_reports
from adpipeline.sources.ga4.resources import Ga4Resource
from adpipeline.sources.ga4.schedules import build_schedules
from adpipeline.warehouse.definitions import with_tables


def build_defs(config: SourcesConfig | None = None) -> dg.Definitions:
    config = config or get_config()
    if not config.ga4.properties:
        return dg.Definitions()
    partitions = ga4_partitions(config)  # one object shared by every report, so they can run together
    reports = configured_reports(config)  # ga4.reports in adpipeline.yaml
    assets = [build_report_asset(report, config, partitions) for report in reports]
    job, schedule = build_schedules(config, assets)
    return with_tables(dg.Definitions(
        assets=assets,
        jobs=[job],
        schedules=[schedule],
        asset_checks=build_checks(config, reports),
        resources={
            "ga4": Ga4Resource(
                credentials=dg.EnvVar(config.ga4.credentials_env),
                credentials_name=config.ga4.credentials_env,
                tokens_per_day=config.ga4.tokens_per_day,
                tokens_per_hour=config.ga4.tokens_per_hour,
            )
        },
    ), [report.table for report in reports])
