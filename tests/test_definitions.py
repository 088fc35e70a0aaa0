"""The code location as a whole: loads fast without side effects, and every asset is fully described."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from adpipeline.conventions import OWNER

PROJECT = Path(__file__).resolve().parent.parent


def load_defs() -> dg.Definitions:
    from adpipeline.definitions import defs

    return defs


def test_every_asset_has_description_group_kinds_owner_and_code_version():
    graph = load_defs().resolve_asset_graph()
    problems = []
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable:
            continue
        missing = [
            name for name, ok in [
                ("description", bool(node.description)),
                ("group", node.group_name not in (None, "default")),
                ("kinds", bool(node.kinds)),
                ("owner", OWNER in (node.owners or [])),
                ("code_version", bool(node.code_version)),
            ] if not ok
        ]
        if missing:
            problems.append(f"{key.to_user_string()}: missing {', '.join(missing)}")
    assert problems == []


def test_every_check_has_a_description():
    nodes = list(load_defs().resolve_asset_graph().asset_check_nodes)
    assert [n.key for n in nodes if not n.description] == []


def test_every_source_asset_carries_its_source_kind():
    """The catalog's kind filter finds each API's assets: meta, breezeway, ga4 (beside python and postgres)."""
    graph = load_defs().resolve_asset_graph()
    wrong = [(key.to_user_string(), sorted(graph.get(key).kinds)) for key in graph.get_all_asset_keys()
             if key.path[0] in ("meta", "breezeway", "ga4") and key.path[0] not in graph.get(key).kinds]
    assert wrong == []


def test_check_descriptions_name_only_the_levels_their_threshold_has():
    """Descriptions come from the thresholds table: a daily feed has no WARN level, so none is described."""
    from adpipeline.monitoring import thresholds as T

    nodes = {n.key.to_user_string(): n.description for n in load_defs().resolve_asset_graph().asset_check_nodes}
    assert [k for k, d in nodes.items() if "None" in d] == []
    assert nodes["breezeway/people:lateness"].endswith(": ERROR above 25 h.")
    assert nodes["breezeway/reservations:lateness"].endswith(": WARN above 2 h, ERROR above 4 h.")
    assert nodes["ga4/traffic_acquisition:lateness"].endswith(f": {T.GA4_LATENESS.limits()}.")
    assert "WARN below 14 days, ERROR below 7 days" in nodes["meta/access_token:token_lifetime"]
    assert "ERROR when expired" in nodes["meta/access_token:token_data_access"]


def test_definitions_load_without_database_network_or_environment():
    # No warehouse, no credentials, an unreachable DSN: loading must still work and be quick.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "BREEZEWAY_", "GA4_", "ADPIPELINE_"))}
    env["ADPIPELINE_WAREHOUSE_URL"] = "postgresql://nobody@192.0.2.1:1/none"
    code = "import time; t=time.perf_counter(); import adpipeline.definitions as d; d.defs.resolve_asset_graph(); print(time.perf_counter()-t)"
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 60
    validate = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                              env={**env, "DAGSTER_HOME": ""}, capture_output=True, text=True, timeout=180, cwd=PROJECT)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "All code locations passed validation" in validate.stdout + validate.stderr


def test_a_fresh_clone_validates_with_the_venvs_own_commands_and_no_built_manifest(tmp_path):
    """What a newcomer runs: `.venv/bin/dagster definitions validate` in a clone without dbt_project/target,
    the venv not activated (dbt is not on PATH): the manifest is built and the venv's own dbt is used."""
    clone = tmp_path / "clone"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (PROJECT / name).is_file():  # tracked files as the checkout has them (edits included)
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            (clone / name).write_bytes((PROJECT / name).read_bytes())
    assert not (clone / "dbt_project" / "target").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "BREEZEWAY_", "GA4_", "ADPIPELINE_",
                                                                     "DAGSTER_", "VIRTUAL_ENV", "UV_"))}
    env.update({"PATH": "/usr/bin:/bin", "PYTHONPATH": str(clone)})  # the clone's package, not the checkout's
    validate = subprocess.run([str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w",
                               "workspace.yaml"], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    output = validate.stdout + validate.stderr
    assert validate.returncode == 0, output[-4000:]
    assert "All code locations passed validation" in output
    assert (clone / "dbt_project" / "target" / "manifest.json").exists()


def test_the_token_and_checks_jobs_go_first_in_the_run_queue():
    """Dagster's run queue starts the highest `dagster/priority` first: a backlog of bulk loads must not delay
    the token refresh (the token would expire) or the checks (the pipeline would look on time)."""
    defs = load_defs()
    priority = {job.name: int(job.tags.get("dagster/priority", 0)) for job in defs.resolve_all_job_defs()}
    urgent = {"meta_token_job", "monitoring_checks_job"}
    assert all(priority[name] > 0 for name in urgent)
    assert max(p for name, p in priority.items() if name not in urgent) < min(priority[name] for name in urgent)


def test_dg_checks_and_lists_the_definitions():
    """`dg` (Dagster's newer CLI) finds the project through [tool.dg] in pyproject.toml."""
    dg_cli = str(Path(sys.executable).with_name("dg"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADPIPELINE_", "DAGSTER_"))}
    checked = subprocess.run([dg_cli, "check", "defs"], cwd=PROJECT, env=env, capture_output=True, text=True,
                             timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    listed = subprocess.run([dg_cli, "list", "defs", "--json"], cwd=PROJECT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert listed.returncode == 0, listed.stderr
    import json

    found = json.loads(listed.stdout)
    assert {"meta/ads_insights", "breezeway/reservations", "ga4/traffic_acquisition"} <= {
        a["asset_key"] for a in found["assets"]}
    assert "monitoring_checks_job" in {j["name"] for j in found["jobs"]}
    assert "check_alerts" in {s["name"] for s in found["sensors"]}


def test_every_table_asset_shows_its_columns_with_their_types():
    """The UI's Columns table: a landing table's columns from its declaration (the sources' tests keep it in
    step with the migrations), a mart's from data_type in the dbt YAML (test_dbt_models compares them with dbt's build)."""
    graph = load_defs().resolve_asset_graph()
    untyped = {}
    for key in graph.get_all_asset_keys():
        if key.path[0] not in ("meta", "breezeway", "ga4", "marts") or key == dg.AssetKey(["meta", "access_token"]):
            continue
        schema = graph.get(key).metadata.get("dagster/column_schema")
        columns = schema.columns if schema else []
        if not columns or any(c.type in ("", "?", None) for c in columns):
            untyped[key.to_user_string()] = [c.name for c in columns if c.type in ("", "?", None)] or "no columns"
    assert untyped == {}
    meta_insights = graph.get(dg.AssetKey(["meta", "ads_insights"])).metadata
    assert meta_insights["dagster/table_name"] == "warehouse.raw_meta.ads_insights"
    types = {c.name: c.type for c in meta_insights["dagster/column_schema"].columns}
    assert (types["date"], types["spend"], types["payload"], types["loaded_at"]) == ("date", "numeric", "jsonb",
                                                                                    "timestamptz")


def test_every_check_and_asset_links_to_a_runbook_that_exists():
    """The `runbook` metadata the UI shows: a check's to the page of its signal, an asset's to the index."""
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    defs = load_defs()
    graph = defs.resolve_asset_graph()
    links = {key.to_user_string(): graph.get(key).metadata.get("runbook") for key in graph.get_all_asset_keys()
             if graph.get(key).is_materializable}
    for checks in defs.asset_checks or []:
        links.update({f"{spec.key.asset_key.to_user_string()}:{spec.name}": spec.metadata.get("runbook")
                      for spec in checks.check_specs})
    for assets in defs.assets or []:
        links.update({f"{spec.key.asset_key.to_user_string()}:{spec.name}": spec.metadata.get("runbook")
                      for spec in getattr(assets, "check_specs", [])})
    broken = {}
    for owner, link in links.items():
        path = Path(url2pathname(urlparse(link.url).path)) if isinstance(link, dg.UrlMetadataValue) else None
        if path is None or path.parent != PROJECT / "docs" / "runbooks" or not path.is_file():
            broken[owner] = link
    assert broken == {}
    assert links["meta/access_token:token_scopes"].url.endswith("/docs/runbooks/token_scopes.md")
    assert any(link.url.endswith("/docs/runbooks/dbt_tests.md") for link in links.values())


def test_runbook_links_follow_the_configured_base_url(tmp_path, monkeypatch):
    """A deployed UI is not on the code location's machine: links go to where the runbooks are served."""
    from adpipeline.config import get_config
    from adpipeline.monitoring.checks import build_check

    config = tmp_path / "adpipeline.yaml"
    config.write_text((PROJECT / "adpipeline.yaml").read_text().replace(
        "  ui_base_url: http://localhost:3000\n",
        "  ui_base_url: http://localhost:3000\n  runbook_base_url: https://git.example.com/adpipeline/docs/runbooks/\n"))
    monkeypatch.setenv("ADPIPELINE_CONFIG", str(config))
    get_config.cache_clear()
    try:
        check = build_check(["meta", "ads_insights"], "lateness", "late?", lambda conn, now: None)
        (spec,) = check.check_specs
        assert spec.metadata["runbook"].url == "https://git.example.com/adpipeline/docs/runbooks/lateness.md"
    finally:
        monkeypatch.undo()
        get_config.cache_clear()
    (spec,) = build_check(["meta", "ads_insights"], "lateness", "late?", lambda conn, now: None).check_specs
    assert spec.metadata["runbook"].url == (PROJECT / "docs" / "runbooks" / "lateness.md").as_uri()
