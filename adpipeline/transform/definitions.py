"""Transform slice: the dbt project's models, seeds and tests as assets and checks, and the dbt resource."""

from __future__ import annotations

import dagster as dg
from dagster_dbt.dbt_project import using_dagster_dev

from adpipeline.config import SourcesConfig, get_config
from adpipeline.transform.assets import build_dbt_assets
from adpipeline.transform.automation import build_automation
from adpipeline.transform.project import ensure_manifest, require_manifest
from adpipeline.transform.resources import dbt_resource


def build_defs(config: SourcesConfig | None = None) -> dg.Definitions:
    """Needs dbt_project/target/manifest.json (see `adpipeline.transform.project`); raises a clear
    error naming the command that builds it when it is missing. Under `dagster dev` a stale manifest is
    rebuilt on (re)load, so edits to models show up with a code-location reload."""
    config = config or get_config()
    if using_dagster_dev():
        ensure_manifest()
    manifest = require_manifest()
    meta_daily, ga4_daily, models = build_dbt_assets(config, manifest)
    jobs, sensor = build_automation(meta_daily, ga4_daily, models)
    return dg.Definitions(assets=[meta_daily, ga4_daily, models], jobs=jobs, sensors=[sensor],
                          resources={"dbt": dbt_resource()})
