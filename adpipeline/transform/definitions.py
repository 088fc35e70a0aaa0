"""Transform slice: the dbt project's models, seeds and tests as assets and checks, and the dbt resource."""

from __future__ import annotations

import dagster as dg

from adpipeline.config import SourcesConfig, get_config
from adpipeline.transform.assets import build_dbt_assets
from adpipeline.transform.automation import build_automation
from adpipeline.transform.project import load_manifest
from adpipeline.transform.resources import dbt_resource
from adpipeline.transform.source_freshness import build_source_freshness_checks


def build_defs(config: SourcesConfig | None = None) -> dg.Definitions:
    """Builds dbt_project/target/manifest.json first when it is missing or stale (see
    `adpipeline.transform.project.load_manifest`), so edits to models show up with a code-location reload."""
    config = config or get_config()
    manifest = load_manifest()
    meta_daily, ga4_daily, models = build_dbt_assets(config, manifest)
    jobs, sensors = build_automation(meta_daily, ga4_daily, models)
    return dg.Definitions(assets=[meta_daily, ga4_daily, models], jobs=jobs, sensors=sensors,
                          asset_checks=build_source_freshness_checks(manifest, config),
                          resources={"dbt": dbt_resource()})
