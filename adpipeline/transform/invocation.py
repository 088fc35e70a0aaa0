"""One `dbt build` from a Dagster step, costing what dbt's own work costs.

* Partial parsing survives between runs. dbt re-parses the whole project when its `--vars` or its
  connection differ from the saved parse state, so: the vars passed are only the configured, stable ones
  (restatement windows); a partitioned run's window reaches dbt through the environment, read by the
  macros at execution only (dbt records what parsing reads, not what execution reads); and the parse
  state of the last run against the same warehouse is handed to the next one (one state file per
  connection + vars, without the password: tests and the demo use other warehouses than production).
* One invocation per step; after it, the log says whether dbt parsed partially or fully (and why), and
  dbt's own elapsed time beside the step's.
* On a fresh warehouse the dbt jobs read each other's relations (the Meta facts read `stg_fx_rates` of the
  unpartitioned set; the cross-source mart reads the daily facts), so whichever runs first would fail.
  Such missing parents are built first, by one extra invocation (logged); once they exist it never runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from dagster_dbt import DbtCliResource
from dagster_dbt.asset_utils import DAGSTER_DBT_UNIQUE_ID_METADATA_KEY as UNIQUE_ID
from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets
from psycopg import sql

from adpipeline.config import SourcesConfig
from adpipeline.transform.project import PARTIAL_PARSE, dbt_project, ensure_manifest
from adpipeline.transform.resources import PASSWORD_VAR, dbt_environment, environment
from adpipeline.warehouse.resource import WarehouseResource

# what `dbt build` does per model: the model, then its tests (a failing ERROR test skips what is downstream)
BUILD = ["build"]
INDIRECT_SELECTION = "buildable"
# a partitioned run's window ([start, end), reporting time zone), read by macros/incremental_window.sql
WINDOW_START_VAR, WINDOW_END_VAR = "ADPIPELINE_DBT_START_DATE", "ADPIPELINE_DBT_END_DATE"
_UNABLE = re.compile(r"Unable to do partial parsing because ([^\"\\\n]+)")


def stable_vars(config: SourcesConfig) -> dict[str, Any]:
    """The `--vars` of every run: configuration only, identical from run to run (a change re-parses)."""
    return {"meta_restatement_days": config.meta.attribution_window_days,
            "ga4_restatement_days": config.ga4.restatement_days}


def window_environment(context: dg.AssetExecutionContext) -> dict[str, str]:
    """The partition window of a partitioned run (one partition, or a single-run backfill's range)."""
    if context.assets_def.partitions_def is None:
        return {WINDOW_START_VAR: "", WINDOW_END_VAR: ""}
    window = context.partition_time_window
    return {WINDOW_START_VAR: window.start.strftime("%Y-%m-%d"), WINDOW_END_VAR: window.end.strftime("%Y-%m-%d")}


def target_root() -> Path:
    """Where dagster-dbt puts each invocation's target folder (DBT_TARGET_PATH, else the project's)."""
    root = Path(os.environ.get("DBT_TARGET_PATH") or dbt_project.target_path)
    return root if root.is_absolute() else dbt_project.project_dir / root


def parse_state_path(connection: Mapping[str, str], dbt_vars: Mapping[str, Any]) -> Path:
    """The saved parse state for runs with this connection and these vars, of this manifest: a changed
    project starts from a full parse (dbt's partial re-parse of changed files is not always faithful).
    The password is not part of the key (dbt does not hash it either), so no digest of it is written."""
    stat = dbt_project.manifest_path.stat() if dbt_project.manifest_path.exists() else None
    manifest = [stat.st_mtime_ns, stat.st_size] if stat else None
    key = json.dumps([{k: v for k, v in connection.items() if k != PASSWORD_VAR}, dbt_vars, manifest],
                     sort_keys=True)
    return target_root() / f"runs.{hashlib.sha1(key.encode()).hexdigest()[:12]}.{PARTIAL_PARSE}"


def prepare_manifest(dsn: str, config: SourcesConfig, *, force: bool = False) -> Path:
    """`ensure_manifest`, parsing (when the manifest must be built anyway: a fresh clone, an edited project) as
    the runs on this warehouse will, with their connection fields and vars, and keeping that full parse's state
    for them: their first run then parses partially instead of fully once more (~7 s of a demo's first dbt step)."""
    connection = {k: v for k, v in dbt_environment(dsn).items() if k != PASSWORD_VAR}  # parsing reads no password
    dbt_vars = stable_vars(config)
    return ensure_manifest(force=force, env=connection, dbt_vars=dbt_vars,
                           keep_state=lambda parsed: _keep_parse_state(parsed, parse_state_path(connection, dbt_vars)))


def parse_outcome(target: Path) -> str:
    """'partial' or 'full (<dbt's reason>)', from the invocation's dbt.log."""
    log_file = target / "dbt.log"
    text = log_file.read_text(errors="replace") if log_file.exists() else ""
    unable = _UNABLE.search(text)
    if unable:
        return f"full ({unable.group(1).strip()})"
    return "partial" if "Partial parsing enabled" in text else "full (no saved parse state)"


def _keep_parse_state(target: Path, state: Path) -> None:
    produced = target / PARTIAL_PARSE
    if not produced.exists():
        return
    try:  # copy then rename: a concurrent run reads the old state or the new one, never half a file
        state.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkstemp(prefix=".parse-state-", dir=state.parent)[1])
        shutil.copyfile(produced, scratch)
        os.replace(scratch, state)
    except OSError:  # a read-only image: the next run parses fully, nothing else is lost
        pass


def run_dbt(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource,
            config: SourcesConfig) -> Iterator[Any]:
    """`dbt build` of the selected models (and their tests) against the warehouse resource's DSN."""
    dbt_vars = stable_vars(config)
    connection = dbt_environment(warehouse.dsn())
    window = window_environment(context)
    context.log.info(f"dbt vars: {dbt_vars}; partition window: {window[WINDOW_START_VAR] or 'none'}"
                     f"{' to ' + window[WINDOW_END_VAR] + ' (exclusive)' if window[WINDOW_END_VAR] else ''}")
    state = parse_state_path(connection, dbt_vars)
    target_root().mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix=f"{context.op_execution_context.op.name}-{context.run.run_id[:8]}-", dir=target_root()))
    if state.exists():  # dagster-dbt copies the project's parse state only into a folder that has none
        shutil.copyfile(state, target / PARTIAL_PARSE)
    started = time.monotonic()
    _build_missing_parents(context, dbt, warehouse, connection, dbt_vars, state)
    # read when the dbt process starts; `buildable`: a test runs when all its parents are selected or
    # upstream of the selection, so a multi-parent test never runs before its inputs exist
    with environment({**connection, **window, "DBT_INDIRECT_SELECTION": INDIRECT_SELECTION}):
        invocation = dbt.cli([*BUILD, "--vars", json.dumps(dbt_vars, sort_keys=True)], context=context,
                             target_path=target)
    yield from with_row_counts(invocation.stream(), invocation.manifest, warehouse, context.log)
    # reached only on success: a failed invocation keeps its artifacts (dbt.log, run_results.json) to debug
    own = invocation.get_artifact("run_results.json").get("elapsed_time")
    context.log.info(f"dbt build: parse {parse_outcome(target)}; dbt's own time "
                     f"{own if own is None else round(own, 2)} s, the step's {time.monotonic() - started:.2f} s")
    _keep_parse_state(target, state)
    shutil.rmtree(target, ignore_errors=True)


def missing_parents(context: dg.AssetExecutionContext, manifest: Mapping[str, Any],
                    warehouse: WarehouseResource) -> list[str]:
    """Names of the models and seeds of OTHER dbt assets that the selected models read, directly or through
    each other, and that do not exist in the warehouse yet."""
    own = {spec.metadata[UNIQUE_ID] for spec in context.assets_def.specs}
    nodes = manifest["nodes"]
    def parents(node: Mapping[str, Any]) -> list[str]:
        return (node.get("depends_on") or {}).get("nodes") or []  # a seed has none

    pending = [parent for key in context.selected_asset_keys
               for parent in parents(nodes[context.assets_def.get_asset_spec(key).metadata[UNIQUE_ID]])]
    missing: list[str] = []
    seen: set[str] = set()
    with psycopg.connect(warehouse.dsn(), autocommit=True) as conn:
        while pending:
            unique_id = pending.pop()
            node = nodes.get(unique_id)
            if unique_id in seen or unique_id in own or node is None or node["resource_type"] not in ("model", "seed"):
                continue
            seen.add(unique_id)
            relation = sql.Identifier(node["schema"], node.get("alias") or node["name"]).as_string(conn)
            if conn.execute("SELECT to_regclass(%s)", (relation,)).fetchone()[0] is None:
                missing.append(node["name"])
                pending.extend(parents(node))
    return sorted(missing)


def _build_missing_parents(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource,
                           connection: Mapping[str, str], dbt_vars: Mapping[str, Any], state: Path) -> None:
    manifest = get_manifest_and_translator_from_dbt_assets([context.assets_def])[0]
    missing = missing_parents(context, manifest, warehouse)
    if not missing:
        return
    context.log.warning(f"fresh warehouse: {', '.join(missing)} (built by another dbt job) do not exist yet; "
                        "building them first")
    target = Path(tempfile.mkdtemp(prefix=f"parents-{context.run.run_id[:8]}-", dir=target_root()))
    if state.exists():
        shutil.copyfile(state, target / PARTIAL_PARSE)
    # no window: an incremental parent is built whole, as any first build of it is; models and seeds only
    # (their tests run with the job that owns them)
    with environment({**connection, WINDOW_START_VAR: "", WINDOW_END_VAR: ""}):
        dbt.cli(["build", "--resource-type", "model", "--resource-type", "seed", "--select", " ".join(missing),
                 "--vars", json.dumps(dbt_vars, sort_keys=True)], target_path=target).wait()
    shutil.rmtree(target, ignore_errors=True)


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
