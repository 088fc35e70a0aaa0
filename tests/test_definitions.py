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
