"""The dbt wiring without a warehouse: manifest preparation, profile variables, how dbt nodes become assets."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_dbt import DbtProject

from adpipeline.config import get_config
from adpipeline.conventions import OWNER
from adpipeline.sources.ga4.assets import DATE, ga4_partitions
from adpipeline.sources.meta.partitions import daily_partitions
from adpipeline.transform import project as project_module
from adpipeline.transform.assets import GA4_DAILY_TAG, META_DAILY_TAG, POOL, build_dbt_assets
from adpipeline.transform.project import (
    DBT_PROJECT_DIR,
    PREPARE_COMMAND,
    ManifestMissingError,
    dbt_project,
    ensure_manifest,
    manifest_is_stale,
    load_manifest,
)
from adpipeline.transform.resources import PASSWORD_VAR, dbt_environment, environment


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(ensure_manifest().read_text())


@pytest.fixture(scope="module")
def dbt_defs() -> list[dg.AssetsDefinition]:
    return build_dbt_assets(get_config(), ensure_manifest())


def _specs(dbt_defs) -> dict[str, tuple[dg.AssetsDefinition, dg.AssetSpec]]:
    return {spec.key.to_user_string(): (a, spec) for a in dbt_defs for spec in a.specs}


# ---- connection: derived from the warehouse DSN, no secret in the profile ------------------------------


def test_dsn_maps_to_profile_variables():
    env = dbt_environment("postgresql://report:s3cr%40t@db.example.com:6543/analytics?sslmode=require")
    assert env == {
        "ADPIPELINE_DBT_HOST": "db.example.com",
        "ADPIPELINE_DBT_PORT": "6543",
        "ADPIPELINE_DBT_USER": "report",
        "ADPIPELINE_DBT_DBNAME": "analytics",
        "ADPIPELINE_DBT_SSLMODE": "require",
        PASSWORD_VAR: "s3cr@t",
    }
    keyword = dbt_environment("host=/var/run/postgresql dbname=warehouse user=etl")
    assert keyword["ADPIPELINE_DBT_HOST"] == "/var/run/postgresql"
    assert keyword["ADPIPELINE_DBT_PORT"] == "5432" and keyword[PASSWORD_VAR] == ""
    embedded = dbt_environment("postgresql://postgres@127.0.0.1:38137/warehouse")
    assert (embedded["ADPIPELINE_DBT_HOST"], embedded["ADPIPELINE_DBT_PORT"]) == ("127.0.0.1", "38137")


def test_a_bad_dsn_is_reported_without_echoing_it():
    with pytest.raises(ValueError) as error:
        dbt_environment("postgresql://u:topsecret@h:notaport/db x=")
    assert "topsecret" not in str(error.value)


def test_environment_is_restored_after_the_block():
    os.environ.pop("ADPIPELINE_DBT_HOST", None)
    with environment({"ADPIPELINE_DBT_HOST": "h"}):
        assert os.environ["ADPIPELINE_DBT_HOST"] == "h"
    assert "ADPIPELINE_DBT_HOST" not in os.environ


def test_profile_reads_every_connection_field_from_the_environment():
    profile = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())["adpipeline"]["outputs"]["warehouse"]
    for field in ("host", "port", "user", "password", "dbname", "sslmode"):
        assert "env_var(" in str(profile[field]), field
    assert PASSWORD_VAR in profile["password"] and PASSWORD_VAR.startswith("DBT_ENV_SECRET_")


# ---- the manifest ----------------------------------------------------------------------------------------


@pytest.fixture
def project_copy(tmp_path: Path) -> DbtProject:
    copy = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    return DbtProject(project_dir=copy, profiles_dir=copy)


def test_a_missing_manifest_is_built_when_the_definitions_load(project_copy: DbtProject):
    assert not project_copy.manifest_path.exists()
    path = load_manifest(project_copy)
    assert path == project_copy.manifest_path and "fct_ad_performance_daily" in path.read_text()
    assert not manifest_is_stale(project_copy)


def test_a_manifest_that_cannot_be_built_is_a_clear_error_naming_the_command(project_copy: DbtProject):
    (project_copy.project_dir / "dbt_project.yml").write_text("name: [not, a, project\n")
    with pytest.raises(ManifestMissingError) as error:
        load_manifest(project_copy)
    assert PREPARE_COMMAND in str(error.value) and "dbt parse" in str(error.value)


def test_manifest_is_stale_when_missing_or_older_than_a_dbt_file(project_copy: DbtProject):
    assert manifest_is_stale(project_copy)
    project_copy.manifest_path.parent.mkdir(parents=True)
    project_copy.manifest_path.write_text("{}")
    assert not manifest_is_stale(project_copy)
    model = project_copy.project_dir / "models" / "marts" / "fct_ad_performance_daily.sql"
    later = time.time() + 5
    os.utime(model, (later, later))
    assert manifest_is_stale(project_copy)


def test_a_manifest_stamped_in_the_future_is_stale(project_copy: DbtProject):
    """Built under `faketime -f +100d`, its mtime is 100 days ahead: no edit of the next 100 days would be newer."""
    project_copy.manifest_path.parent.mkdir(parents=True)
    project_copy.manifest_path.write_text("{}")
    ahead = time.time() + 100 * 86400
    os.utime(project_copy.manifest_path, (ahead, ahead))
    assert manifest_is_stale(project_copy)


def test_a_rebuilt_manifest_keeps_the_yaml_config_of_singular_tests(project_copy: DbtProject):
    """After a macro edit the manifest is rebuilt; dbt's partial re-parse used to drop the singular test's
    YAML config (its `dagster.ref`), so the check silently left its asset."""
    def singular_meta() -> dict:
        manifest = json.loads(project_copy.manifest_path.read_text())
        return manifest["nodes"]["test.adpipeline.assert_campaign_rollup_matches_ads"]["config"]["meta"]

    ensure_manifest(project_copy)
    assert singular_meta() == {"dagster": {"ref": {"name": "fct_campaign_performance_daily"}}}
    macro = project_copy.project_dir / "macros" / "incremental_window.sql"
    macro.write_text(macro.read_text() + "\n{# edited #}\n")
    later = time.time() + 5
    os.utime(macro, (later, later))
    ensure_manifest(project_copy)
    assert singular_meta() == {"dagster": {"ref": {"name": "fct_campaign_performance_daily"}}}


def test_the_checkout_manifest_is_fresh_after_ensure_manifest():
    ensure_manifest()
    assert not manifest_is_stale(dbt_project)
    assert project_module.load_manifest() == dbt_project.manifest_path


# ---- the dbt project ------------------------------------------------------------------------------------


def test_models_land_in_staging_or_marts_only(manifest: dict):
    nodes = [n for n in manifest["nodes"].values() if n["resource_type"] in ("model", "seed")]
    assert {n["schema"] for n in nodes} == {"staging", "marts"}
    assert {n["name"] for n in nodes if n["schema"] == "marts"} >= {
        "fct_ad_performance_daily", "fct_campaign_performance_daily", "fct_web_traffic_daily", "dim_properties",
        "fct_reservations"}


def test_incremental_models_are_delete_insert_and_partitioned(manifest: dict):
    incremental = [n for n in manifest["nodes"].values()
                   if n["resource_type"] == "model" and n["config"]["materialized"] == "incremental"]
    assert {n["name"] for n in incremental} >= {"fct_ad_performance_daily", "fct_web_traffic_daily"}
    for node in incremental:
        assert node["config"]["incremental_strategy"] == "delete+insert", node["name"]
        assert set(node["tags"]) & {META_DAILY_TAG, GA4_DAILY_TAG}, f"{node['name']} has no partition tag"
        assert any("delete_partition_window" in hook["sql"] for hook in node["config"]["pre-hook"]), node["name"]


def test_every_model_and_column_is_documented(manifest: dict):
    missing = []
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model" or node["package_name"] != "adpipeline":
            continue
        if not node["description"].strip():
            missing.append(node["name"])
        if node["schema"] == "marts":
            missing += [f"{node['name']}.{c}" for c, col in node["columns"].items() if not col["description"].strip()]
    assert missing == []


# ---- as Dagster assets -------------------------------------------------------------------------------------


def test_sources_are_the_extraction_assets(dbt_defs):
    specs = _specs(dbt_defs)
    deps = {key: {d.asset_key.to_user_string() for d in spec.deps} for key, (_, spec) in specs.items()}
    assert deps["staging/stg_meta__ads_insights"] == {"meta/ads_insights"}
    assert deps["staging/stg_ga4__traffic_acquisition"] == {"ga4/traffic_acquisition"}
    assert deps["staging/stg_breezeway__reservations"] == {"breezeway/reservations"}
    assert deps["staging/stg_breezeway__properties"] == {"breezeway/properties"}
    assert {"meta/campaigns", "meta/ads", "meta/adsets", "meta/ad_accounts"} <= set().union(*deps.values())


def test_every_dbt_asset_is_described_grouped_owned_and_versioned(dbt_defs):
    for key, (_, spec) in _specs(dbt_defs).items():
        assert spec.group_name == key.split("/")[0] and spec.group_name in ("staging", "marts"), key
        assert spec.owners == [OWNER], key
        assert {"dbt", "postgres"} <= set(spec.kinds), key
        assert spec.code_version and spec.description, key


def test_daily_facts_share_the_partitions_of_their_sources(dbt_defs):
    config = get_config()
    specs = _specs(dbt_defs)
    meta_daily = daily_partitions(config)
    ga4_daily = ga4_partitions(config).get_partitions_def_for_dimension(DATE)
    for key in ("staging/stg_meta__ads_insights", "staging/stg_meta__account_insights",
                "marts/fct_ad_performance_daily", "marts/fct_campaign_performance_daily"):
        assets_def = specs[key][0]
        assert assets_def.partitions_def == meta_daily, key
        assert assets_def.backfill_policy == dg.BackfillPolicy.single_run()
    for key in ("staging/stg_ga4__traffic_acquisition", "staging/stg_ga4__landing_page_events",
                "marts/fct_web_traffic_daily", "marts/fct_web_traffic_other_daily"):
        assert specs[key][0].partitions_def == ga4_daily, key
    # rebuilt whole: any stay or task can change at any time; the marketing mart spans both sources' days
    for key in ("marts/dim_properties", "marts/fct_reservations", "marts/dim_ads", "staging/fx_rates",
                "marts/fct_property_occupancy_daily", "marts/fct_turnovers", "marts/fct_marketing_channel_daily",
                "staging/campaign_mapping", "staging/stg_breezeway__tasks"):
        assert specs[key][0].partitions_def is None, key


def test_dbt_runs_in_the_concurrency_pool(dbt_defs):
    for assets_def in dbt_defs:
        assert assets_def.op.pool == POOL


def test_error_tests_block_and_warn_tests_do_not(dbt_defs):
    checks = {spec.key.name: spec for a in dbt_defs for spec in a.check_specs}
    assert checks["non_negative_stg_meta__ads_insights_spend"].blocking
    assert checks["fct_ad_performance_daily_roas_only_when_spend"].blocking
    assert not checks["relationships_fct_reservations_property_key__property_key__ref_dim_properties_"].blocking
    assert all(spec.description for spec in checks.values())
    assert "assert_campaign_rollup_matches_ads" in checks


def test_every_dbt_test_is_an_asset_check_of_exactly_one_dbt_asset(manifest: dict, dbt_defs):
    """No dbt test is lost between the three dbt assets (a cross-source singular test was: the unpartitioned
    set EXCLUDED the daily facts, and dbt's eager exclusion drops every test touching an excluded model)."""
    tests = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "test"}
    checks = [spec.key.name for a in dbt_defs for spec in a.check_specs]
    assert sorted(checks) == sorted(tests)
    specs = {spec.key.name: spec for a in dbt_defs for spec in a.check_specs}
    assert specs["assert_marketing_reconciles_with_sources"].asset_key == dg.AssetKey(["marts", "fct_marketing_channel_daily"])



def test_our_selections_select_what_dbts_own_selector_does(manifest: dict):
    """The selections the dbt assets are built with, evaluated without dbt's engine (selection.py), equal
    dbt's own evaluation on the project's manifest; any other form is left to dagster-dbt."""
    from dagster_dbt.utils import _select_unique_ids_from_manifest as dbts_selection

    from adpipeline.transform.assets import unpartitioned_selection
    from adpipeline.transform.selection import select_from_manifest

    for select in (f"tag:{META_DAILY_TAG}", f"tag:{GA4_DAILY_TAG}", unpartitioned_selection(ensure_manifest()),
                   "fct_ad_performance_daily tag:ga4_daily"):
        ours = select_from_manifest(select, manifest)
        assert ours and ours == dbts_selection(select, "", "", manifest, None), select
    for other in ("+fct_ad_performance_daily", "path:models/marts", "tag:meta_daily,config.materialized:incremental", ""):
        assert select_from_manifest(other, manifest) is None


def test_loading_the_definitions_does_not_import_dbts_selection_engine():
    """dbt's selector (dbt.graph, networkx) is for runs; the code-location load evaluates our selections itself."""
    code = ("import sys, adpipeline.definitions as d; d.defs.resolve_asset_graph(); "
            "print(sorted(m for m in ('dbt.graph', 'networkx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"



def test_a_dbt_invocation_builds_no_dbt_adapter_in_the_step_process():
    """dagster-dbt would load dbt's project, profile and adapter in the step before each invocation, only for
    its own row counts and column metadata, which we do not use (ours go through the warehouse resource)."""
    from adpipeline.transform.resources import dbt_resource

    with environment(dbt_environment("postgresql://report:secret@127.0.0.1:1/analytics")):
        invocation = dbt_resource().cli(["--version"], raise_on_error=False)
        invocation.wait()
    assert invocation.adapter is None


def _ancestors(manifest: dict, unique_id: str) -> set[str]:
    seen: set[str] = set()
    stack = [unique_id]
    while stack:
        for parent in manifest["parent_map"].get(stack.pop(), []):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def test_every_test_can_run_whenever_its_model_is_built(manifest: dict):
    # Dagster runs dbt with indirect selection `buildable`: a test runs when all its parents are selected or
    # upstream of the selection. So every other parent of a test must be an ancestor of the model the test
    # is attached to -- else the check would never run (or would run before its inputs exist).
    by_name = {n["name"]: uid for uid, n in manifest["nodes"].items() if n["resource_type"] in ("model", "seed")}
    problems = []
    for uid, node in manifest["nodes"].items():
        if node["resource_type"] != "test":
            continue
        ref = ((node["config"].get("meta") or {}).get("dagster") or {}).get("ref", {}).get("name")
        attached = node.get("attached_node") or by_name.get(ref)
        parents = {p for p in manifest["parent_map"][uid] if p.startswith(("model.", "seed."))}
        if attached is None:
            problems.append(f"{node['name']}: not attached to one model")
        elif parents - {attached} - _ancestors(manifest, attached):
            problems.append(f"{node['name']}: {sorted(parents - {attached} - _ancestors(manifest, attached))}")
    assert problems == []


def test_code_version_follows_the_sql_its_config_and_the_project_macros_it_calls(manifest: dict):

    from adpipeline.transform.assets import AdpipelineDbtTranslator

    uid = "model.adpipeline.fct_ad_performance_daily"

    def version(m: dict) -> str:
        return AdpipelineDbtTranslator().get_asset_spec(m, uid, None).code_version

    base = version(manifest)
    assert base == version(copy.deepcopy(manifest))
    nested = copy.deepcopy(manifest)  # partition_window is called by incremental_window, not by the model
    nested["macros"]["macro.adpipeline.partition_window"]["macro_sql"] += "\n-- changed"
    config = copy.deepcopy(manifest)
    config["nodes"][uid]["config"]["unique_key"] = "ad_id"
    unrelated = copy.deepcopy(manifest)
    unrelated["nodes"]["model.adpipeline.dim_ads"]["raw_code"] += "\n-- changed"
    assert version(nested) != base and version(config) != base and version(unrelated) == base


def test_source_freshness_mirrors_the_thresholds_table():
    """dbt source freshness uses the same limits as the lateness checks (adpipeline/monitoring/thresholds.py)."""
    from adpipeline.monitoring import thresholds

    def hours(limit) -> dict | None:
        return None if limit is None else {"count": int(limit.total_seconds() // 3600), "period": "hour"}

    def limits(threshold) -> dict:
        return {k: v for k, v in (("warn_after", hours(threshold.warn)), ("error_after", hours(threshold.error)))
                if v is not None}

    dimensions = {("raw_meta", t): None for t in ("ad_accounts", "campaigns", "adsets", "ads")}
    dimensions |= {("raw_breezeway", t): None for t in ("properties", "people", "supplies", "tags")}
    expected = {
        ("raw_meta", None): limits(thresholds.HOURLY_FEED_LATENESS),
        ("raw_breezeway", None): limits(thresholds.DAILY_FEED_LATENESS),
        ("raw_breezeway", "reservations"): limits(thresholds.HOURLY_FEED_LATENESS),
        ("raw_ga4", None): limits(thresholds.GA4_LATENESS),
        **dimensions,  # data arrival is not a signal for tables that rightly stay unchanged for days
    }
    found = {}
    for path in sorted((DBT_PROJECT_DIR / "models").rglob("_*__sources.yml")):
        for source in yaml.safe_load(path.read_text())["sources"]:
            found[(source["name"], None)] = source["config"]["freshness"]
            for table in source["tables"]:
                if "freshness" in (table.get("config") or {}):
                    found[(source["name"], table["name"])] = table["config"]["freshness"]
    assert found == expected


def test_each_source_with_freshness_is_a_scheduled_dagster_check_with_dbts_thresholds(manifest):
    from adpipeline.definitions import defs
    from adpipeline.monitoring import thresholds

    hourly, daily, ga4 = thresholds.HOURLY_FEED_LATENESS, thresholds.DAILY_FEED_LATENESS, thresholds.GA4_LATENESS
    expected = {"meta/ads_insights": hourly, "meta/account_insights": hourly, "breezeway/reservations": hourly,
                "breezeway/tasks": daily, "ga4/traffic_acquisition": ga4, "ga4/landing_page_events": ga4}
    specs = {spec.asset_key.to_user_string(): spec for checks in defs.asset_checks for spec in checks.check_specs
             if spec.name == "dbt_source_freshness"}
    assert set(specs) == set(expected)  # the dimensions (freshness: null) have none
    # worded as the lateness checks word the same thresholds (test_definitions)
    words = {hourly: "WARN above 2 h, ERROR above 4 h", daily: "ERROR above 25 h", ga4: "WARN above 12 h, ERROR above 24 h"}
    for key, spec in specs.items():
        assert f"thresholds: {words[expected[key]]};" in spec.description, (key, spec.description)
        assert spec.metadata.get("adpipeline/scheduled_check") and not spec.blocking
    job = defs.resolve_job_def("monitoring_checks_job")  # re-evaluated every 15 minutes with the others
    in_job = {k.asset_key.to_user_string() for k in job.asset_layer.asset_graph.asset_check_keys
              if k.name == "dbt_source_freshness"}
    assert in_job == set(expected)


def test_a_source_with_freshness_but_no_asset_key_is_a_clear_error(manifest, tmp_path):
    from adpipeline.transform.source_freshness import build_source_freshness_checks

    broken = copy.deepcopy(manifest)
    broken["sources"]["source.adpipeline.raw_meta.ads_insights"]["meta"] = {}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="raw_meta.ads_insights declares freshness but no .*meta.dagster.asset_key"):
        build_source_freshness_checks(path, get_config())
