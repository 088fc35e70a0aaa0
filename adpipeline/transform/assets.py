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
  sources (tags `meta_daily` / `ga4_daily` in dbt); a run receives its partition window as the dbt vars
  start_date / end_date, so a (single-run) backfill of a date range rebuilds exactly those days.
  Everything else (dimensions, reservations, seeds) is one unpartitioned set.
* Every dbt invocation runs in the `dbt` concurrency pool, with indirect selection `buildable` (a test
  runs once all its parents exist).
"""


import hashlib
import json
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from psycopg import sql

from adpipeline.config import SourcesConfig
from adpipeline.conventions import OWNER
from adpipeline.sources.ga4.assets import DATE as GA4_DATE_DIMENSION
from adpipeline.sources.ga4.assets import ga4_partitions
from adpipeline.sources.meta.partitions import daily_partitions
from adpipeline.transform.project import dbt_project
from adpipeline.transform.resources import dbt_environment, environment
from adpipeline.warehouse.resource import WarehouseResource

POOL = "dbt"
GROUPS = ("staging", "marts")
META_DAILY_TAG = "meta_daily"
GA4_DAILY_TAG = "ga4_daily"
PARTITIONED_TAGS = (META_DAILY_TAG, GA4_DAILY_TAG)
# what `dbt build` does per model: the model, then its tests (a failing ERROR test skips what is downstream)
BUILD = ["build"]
INDIRECT_SELECTION = "buildable"

_TEST_WORDING = {
    "not_null": "`{column}` of {model} is never NULL",
    "unique": "`{column}` of {model} is unique",
    "relationships": "every `{column}` of {model} exists in {to}",
    "accepted_values": "`{column}` of {model} is one of the accepted values",
    "non_negative": "`{column}` of {model} is never negative",
    "unique_combination": "{model} has one row per ({columns})",
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
            metadata=spec.metadata,
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
                          columns=", ".join(kwargs.get("columns") or []), expression=kwargs.get("expression", ""))


def _dbt_vars(context: dg.AssetExecutionContext, config: SourcesConfig) -> dict[str, Any]:
    values: dict[str, Any] = {
        "meta_restatement_days": config.meta.attribution_window_days,
        "ga4_restatement_days": config.ga4.restatement_days,
    }
    if context.assets_def.partitions_def is not None:
        # one partition, or the whole range of a single-run backfill ([start, end), reporting time zone)
        window = context.partition_time_window
        values["start_date"] = window.start.strftime("%Y-%m-%d")
        values["end_date"] = window.end.strftime("%Y-%m-%d")
    return values


def run_dbt(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource,
            config: SourcesConfig) -> Iterator[Any]:
    """`dbt build` of the selected models (and their tests) against the warehouse resource's DSN."""
    dbt_vars = _dbt_vars(context, config)
    context.log.info(f"dbt vars: {dbt_vars}")
    # read when the dbt process starts; `buildable`: a test runs when all its parents are selected or
    # upstream of the selection, so a multi-parent test never runs before its inputs exist
    with environment({**dbt_environment(warehouse.dsn()), "DBT_INDIRECT_SELECTION": INDIRECT_SELECTION}):
        invocation = dbt.cli([*BUILD, "--vars", json.dumps(dbt_vars)], context=context)
    yield from with_row_counts(invocation.stream(), invocation.manifest, warehouse, context.log)
    # reached only on success: a failed invocation keeps its artifacts (dbt.log, run_results.json) to debug
    shutil.rmtree(invocation.target_path, ignore_errors=True)


def with_row_counts(events: Iterator[Any], manifest: Mapping[str, Any], warehouse: WarehouseResource,
                    log: Any) -> Iterator[Any]:
    """Each built table's row count as `dagster/row_count` (views are not counted: that would run them).

    Counted through the warehouse resource by schema and name: the manifest's database name is the one
    it was parsed with, not necessarily the warehouse's (dagster-dbt's fetch_row_counts would use it).
    """
    conn = None
    try:
        for event in events:
            unique_id = event.metadata.get("unique_id") if isinstance(event, dg.Output) else None
            node = manifest["nodes"].get(getattr(unique_id, "value", unique_id)) if unique_id else None
            if node and node["config"].get("materialized") in ("table", "incremental", "seed"):
                relation = sql.Identifier(node["schema"], node.get("alias") or node["name"])
                try:
                    conn = conn or psycopg.connect(warehouse.dsn(), autocommit=True)
                    count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(relation)).fetchone()[0]
                except psycopg.Error as exc:  # the model was built; a missing count must not fail the step
                    log.warning(f"row count of {node['schema']}.{node['name']} not recorded: {type(exc).__name__}")
                else:
                    event = event.with_metadata({**event.metadata, "dagster/row_count": dg.MetadataValue.int(count)})
            yield event
    finally:
        if conn is not None:
            conn.close()


def build_dbt_assets(config: SourcesConfig, manifest: Path) -> list[dg.AssetsDefinition]:
    translator = AdpipelineDbtTranslator()
    meta_daily = daily_partitions(config.reporting_timezone)  # the partitions of meta/ads_insights
    ga4_daily = ga4_partitions(config).get_partitions_def_for_dimension(GA4_DATE_DIMENSION)
    common: dict[str, Any] = {"manifest": manifest, "project": dbt_project, "dagster_dbt_translator": translator,
                              "pool": POOL}

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

    @dbt_assets(name="dbt_models", exclude=" ".join(f"tag:{t}" for t in PARTITIONED_TAGS), **common)
    def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                   warehouse: WarehouseResource) -> Iterator[Any]:
        yield from run_dbt(context, dbt, warehouse, config)

    return [dbt_meta_daily, dbt_ga4_daily, dbt_models]
