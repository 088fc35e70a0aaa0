"""Fixtures of the fault suite (issue 22): a Dagster instance on Postgres storage, the session's sandbox and
warehouse, every source pointed at the sandbox, the Meta token a canary the sandbox issued for the suite."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from fault_harness import CANARY, FaultPipeline, issue_meta_token
from test_monitoring import dagster_env, defs  # noqa: F401 - fixtures

import dagster as dg

from adpipeline.sandbox.breezeway import demo_environment as breezeway_environment
from adpipeline.sandbox.ga4 import demo_environment as ga4_environment
from adpipeline.sandbox.meta import demo_environment as meta_environment
from adpipeline.config import get_config
from adpipeline.sources.breezeway.tables import ENTITIES, TASK_CHILDREN
from adpipeline.sources.ga4.reports import REPORT_METADATA, configured_reports
from adpipeline.sources.meta import tables as meta_tables


def pytest_collection_modifyitems(items) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def pipeline(sandbox, warehouse_url, dagster_env, defs, monkeypatch):  # noqa: F811
    environment = {**meta_environment(sandbox.base_url), **ga4_environment(sandbox.base_url),
                   **breezeway_environment(sandbox.base_url, get_config().breezeway.regions)}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    issue_meta_token(sandbox, CANARY)
    monkeypatch.setenv("META_ACCESS_TOKEN", CANARY)
    landing = [*meta_tables.ALL, *ENTITIES, *TASK_CHILDREN, *(r.table for r in configured_reports(get_config())),
               REPORT_METADATA]
    with psycopg.connect(warehouse_url) as conn:  # each scenario starts from an empty landing zone
        conn.execute("TRUNCATE " + ", ".join(t.qualified for t in landing))
        conn.execute("DELETE FROM ops.etl_sync_log")
        conn.execute("DELETE FROM ops.platform_tokens")
        conn.execute("DELETE FROM ops.alert_deliveries")
        conn.execute("DELETE FROM ops.alerts")
    with dg.DagsterInstance.get() as instance:
        yield FaultPipeline(sandbox, warehouse_url, instance, defs)


@pytest.fixture
def server_log(warehouse_home) -> Path | None:
    """The embedded server's log file (None on an external test warehouse)."""
    if os.environ.get("ADPIPELINE_TEST_WAREHOUSE_URL"):
        return None
    from adpipeline.warehouse.embedded import EmbeddedServer

    return EmbeddedServer(warehouse_home).logfile
