"""The dbt models as Dagster assets: one lineage from the extraction assets to the marts.

* dbt sources map to the extraction assets through `meta: {dagster: {asset_key: [...]}}` in the
  sources' YAML (`raw_meta.ads_insights` is `meta/ads_insights`), so the graph runs from API to mart.
* Models and seeds get their group from their schema (`staging` / `marts`), the project's owner, kinds
  dbt + postgres, a code version (hash of their SQL, materialization config and the project macros they
  call) and a description; asset keys are `<schema>/<name>`, the relation's own name. Built tables
  report their row count (`dagster/row_count`).
* dbt tests become asset checks; ERROR-severity tests are blocking, so a failure stops the models
  downstream of it (dbt skips them inside one invocation, Dagster skips later steps).
* The daily facts and their staging views are partitioned with the SAME daily partitions as their
  sources (tags `meta_daily` / `ga4_daily` in dbt); a run receives its partition window (in the
  environment, see invocation.py), so a (single-run) backfill of a date range rebuilds exactly those days.
  Everything else (dimensions, reservations, seeds) is one unpartitioned set.
* Every dbt invocation runs in the `dbt` concurrency pool, with indirect selection `buildable` (a test
  runs once all its parents exist).
"""


import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from dagster_dbt.dbt_manifest import validate_manifest

from adpipeline.config import SourcesConfig
from adpipeline.conventions import OWNER
from adpipeline.monitoring.runbooks import DBT_TESTS, RUNBOOK, runbook
from adpipeline.sources.ga4.assets import DATE as GA4_DATE_DIMENSION
from adpipeline.sources.ga4.assets import ga4_partitions
from adpipeline.sources.meta.partitions import daily_partitions
from adpipeline.transform.project import dbt_project
from adpipeline.transform.invocation import run_dbt
from adpipeline.transform.selection import manifest_selection
from adpipeline.warehouse.resource import WarehouseResource

POOL = "dbt"
GROUPS = ("staging", "marts")
META_DAILY_TAG = "meta_daily"
GA4_DAILY_TAG = "ga4_daily"
PARTITIONED_TAGS = (META_DAILY_TAG, GA4_DAILY_TAG)

_TEST_WORDING = {
    "not_null": "`{column}` of {model} is never NULL",
    "unique": "`{column}` of {model} is unique",
    "relationships": "every `{column}` of {model} exists in {to}",
    "accepted_values": "`{column}` of {model} is one of the accepted values",
    "non_negative": "`{column}` of {model} is never negative",
    "unique_combination": "{model} has one row per ({columns})",
    "unique_index": "{model} has one row per ({columns}), enforced by a unique index",
    "row_assertions": "{model}: every row satisfies {assertions}",
    "expression_is_true": "{model}: {expression}",
}


class AdpipelineDbtTranslator(DagsterDbtTranslator):
    """Group, owner, kinds, code version and description for every dbt node; described checks."""

    def __init__(self) -> None:
        super().__init__(DagsterDbtTranslatorSettings(enable_asset_checks=True))

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        schema = (dbt_resource_props.get("config") or {}).get("schema") or dbt_resource_props.get("schema")
        return schema if schema in GROUPS else "staging"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return [OWNER]

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        props = dbt_resource_props
        description = (props.get("description") or "").strip() or f"dbt {props['resource_type']} {props['name']}"
        if props["resource_type"] in ("model", "seed", "snapshot"):
            materialized = (props.get("config") or {}).get("materialized")
            relation = f"{props.get('schema')}.{props.get('alias') or props['name']}"
            description += f"\n\n`{relation}` -- dbt {props['resource_type']}" + (
                f", materialized {materialized}" if materialized else "") + f" (dbt_project/{props['original_file_path']})."
        return description

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: Any) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        node = manifest["nodes"].get(unique_id)
        if node is None or node["resource_type"] not in ("model", "seed", "snapshot"):
            return spec
        return spec.replace_attributes(code_version=_code_version(manifest, node, spec.code_version))

    def get_asset_check_spec(self, asset_spec: dg.AssetSpec, manifest: Mapping[str, Any], unique_id: str,
                             project: Any) -> dg.AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None:
            return None
        test = manifest["nodes"][unique_id]
        description = spec.description or (test.get("description") or "").strip() or _describe_test(test, asset_spec)
        severity = ((test.get("config") or {}).get("severity") or "error").upper()
        consequence = "blocks the models downstream" if spec.blocking else "warns only"
        return dg.AssetCheckSpec(
            name=spec.name,
            asset=spec.asset_key,
            description=f"{description.rstrip('.')} (dbt test, severity {severity}: {consequence}).",
            additional_deps=spec.additional_deps,
            metadata={**(spec.metadata or {}), RUNBOOK: runbook(DBT_TESTS)},
            blocking=spec.blocking,
        )


def _code_version(manifest: Mapping[str, Any], node: Mapping[str, Any], sql_version: str | None) -> str:
    """The SQL's version plus what else decides the model's rows: its materialization config and the
    project's macros it calls (e.g. the incremental window), so changing those marks it changed too."""
    config = node.get("config") or {}
    parts = [sql_version or node.get("checksum", {}).get("checksum", ""),
             json.dumps({k: config.get(k) for k in ("materialized", "incremental_strategy", "unique_key",
                                                    "pre-hook", "post-hook")}, sort_keys=True, default=str)]
    macros, pending, seen = manifest.get("macros", {}), list((node.get("depends_on") or {}).get("macros") or []), set()
    while pending:  # the project's macros, and the macros they call
        macro_id = pending.pop()
        macro = macros.get(macro_id) or {}
        if macro_id in seen or macro.get("package_name") != manifest["metadata"].get("project_name"):
            continue
        seen.add(macro_id)
        pending.extend((macro.get("depends_on") or {}).get("macros") or [])
    parts += [macros[m].get("macro_sql", "") for m in sorted(seen)]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def _describe_test(test: Mapping[str, Any], asset_spec: dg.AssetSpec) -> str:
    meta = test.get("test_metadata") or {}
    kwargs = meta.get("kwargs") or {}
    wording = _TEST_WORDING.get(meta.get("name", ""))
    model = asset_spec.key.path[-1]
    if wording is None:
        return f"dbt test {test['name']} on {model}"
    to = str(kwargs.get("to", "")).replace("ref('", "").replace("')", "")
    return wording.format(model=model, column=kwargs.get("column_name", ""), to=to,
                          columns=", ".join(kwargs.get("columns") or []), expression=kwargs.get("expression", ""),
                          assertions=", ".join(kwargs.get("assertions") or {}))


def unpartitioned_selection(manifest: Path) -> str:
    """Every model and seed without a partitioned tag, by name. Not `--exclude tag:...`: dbt's (eager)
    exclusion also drops each test touching an excluded model, so a cross-source test on a mart of this set
    that reads the daily facts (assert_marketing_reconciles_with_sources) would belong to no asset."""
    nodes = validate_manifest(manifest)["nodes"].values()  # dagster-dbt's cached parse: read once per load
    return " ".join(sorted(n["name"] for n in nodes if n["resource_type"] in ("model", "seed", "snapshot")
                           and not set(n.get("tags") or ()) & set(PARTITIONED_TAGS)))


def build_dbt_assets(config: SourcesConfig, manifest: Path) -> list[dg.AssetsDefinition]:
    translator = AdpipelineDbtTranslator()
    meta_daily = daily_partitions(config)  # the partitions of meta/ads_insights
    ga4_daily = ga4_partitions(config).get_partitions_def_for_dimension(GA4_DATE_DIMENSION)
    common: dict[str, Any] = {"manifest": manifest, "project": dbt_project, "dagster_dbt_translator": translator,
                              "pool": POOL}

    with manifest_selection():  # the selections without dbt's selection engine (see selection.py)
        @dbt_assets(name="dbt_meta_daily", select=f"tag:{META_DAILY_TAG}", partitions_def=meta_daily,
                    backfill_policy=dg.BackfillPolicy.single_run(), **common)
        def dbt_meta_daily(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                           warehouse: WarehouseResource) -> Iterator[Any]:
            yield from run_dbt(context, dbt, warehouse, config)

        @dbt_assets(name="dbt_ga4_daily", select=f"tag:{GA4_DAILY_TAG}", partitions_def=ga4_daily,
                    backfill_policy=dg.BackfillPolicy.single_run(), **common)
        def dbt_ga4_daily(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                          warehouse: WarehouseResource) -> Iterator[Any]:
            yield from run_dbt(context, dbt, warehouse, config)

        @dbt_assets(name="dbt_models", select=unpartitioned_selection(manifest), **common)
        def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                       warehouse: WarehouseResource) -> Iterator[Any]:
            yield from run_dbt(context, dbt, warehouse, config)

    return [dbt_meta_daily, dbt_ga4_daily, dbt_models]
