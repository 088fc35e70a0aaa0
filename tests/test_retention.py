"""Retention of the ops tables (purge_ops_history_job): old history goes, what checks and loads still read stays."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from adpipeline import clock
from adpipeline.monitoring.retention import purge_ops_history_job
from adpipeline.warehouse.resource import WarehouseResource

D = timedelta(days=1)


def test_purge_keeps_each_scopes_latest_of_every_kind_and_drops_the_rest(fresh_warehouse, sandbox):
    now = clock.now()
    history = [  # (label, scope, sync_type, status, age)
        ("full listing", "austin", "full", "success", 300 * D),      # Breezeway's last full listing: stays
        ("old increment", "austin", "incremental", "success", 260 * D),
        ("last increment", "austin", "incremental", "success", 250 * D),
        ("last partial", "austin", "incremental", "partial", 220 * D),  # when data last landed: stays
        ("old failure", "austin", "incremental", "failed", 200 * D),
        ("last attempt", "austin", "incremental", "failed", 190 * D),
        ("denver old failure", "denver", "incremental", "failed", 200 * D),
        ("denver recent", "denver", "incremental", "failed", 10 * D),
        ("denver stuck", "denver", "full", "running", 400 * D),  # never purged: the next run resolves it
    ]
    with psycopg.connect(fresh_warehouse) as conn:
        for label, scope, sync_type, status, age in history:
            conn.execute(
                "INSERT INTO ops.etl_sync_log (source, scope, entity, sync_type, status, started_at, finished_at, error)"
                " VALUES ('breezeway', %s, 'tasks', %s, %s, %s, %s, %s)",
                (scope, sync_type, status, now - age, None if status == "running" else now - age, label))
        for title, resolved_age in (("old", 100 * D), ("recent", 10 * D), ("open", None)):
            conn.execute(
                "INSERT INTO ops.alerts (severity, signal, title, message, dedupe_key, created_at, resolved_at)"
                " VALUES ('warning', 'lateness', %s, 'm', %s, %s, %s)",
                (title, f"t:{title}", now - 200 * D, None if resolved_age is None else now - resolved_age))

    result = purge_ops_history_job.execute_in_process(resources={"warehouse": WarehouseResource()})

    assert result.success
    with psycopg.connect(fresh_warehouse) as conn:
        kept = {r[0] for r in conn.execute("SELECT error FROM ops.etl_sync_log")}
        alerts = {r[0] for r in conn.execute("SELECT title FROM ops.alerts")}
    assert kept == {"full listing", "last increment", "last partial", "last attempt", "denver recent", "denver stuck"}
    assert alerts == {"recent", "open"}
