"""Purge old rows of the ops tables (Dagster's own ticks/events: `retention` in dagster.yaml)."""


import dagster as dg

from adpipeline import clock
from adpipeline.conventions import LIGHT_EXECUTOR
from adpipeline.warehouse.resource import WarehouseResource

SYNC_LOG_DAYS = 180  # older attempts go, except each scope's latest of every status and sync type
RESOLVED_ALERT_DAYS = 90


@dg.op(description="Delete sync-log rows older than 180 days (keeping each scope's latest row of every status and "
                   "sync type), alerts resolved and alert messages delivered more than 90 days ago.")
def purge_ops_history(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> None:
    with warehouse.connection() as conn:
        # What the checks and loads read stays, however old: the latest attempt (lateness's "latest failed"),
        # the latest partial or success (when data last landed), the latest full success (Breezeway's next full
        # listing). Keeping the latest row of every (status, sync type) keeps all of them.
        sync_rows = conn.execute(
            "DELETE FROM ops.etl_sync_log WHERE started_at < %s - make_interval(days => %s)"
            " AND status <> 'running'"
            " AND id NOT IN (SELECT DISTINCT ON (source, scope, entity, status, sync_type) id FROM ops.etl_sync_log"
            "                ORDER BY source, scope, entity, status, sync_type, started_at DESC, id DESC)",
            (now := clock.now(), SYNC_LOG_DAYS),
        ).rowcount
        alert_rows = conn.execute(
            "DELETE FROM ops.alerts WHERE resolved_at < %s - make_interval(days => %s)", (now, RESOLVED_ALERT_DAYS)
        ).rowcount
        conn.execute("DELETE FROM ops.alert_deliveries WHERE status = 'delivered' AND delivered_at < %s"
                     " - make_interval(days => %s)", (now, RESOLVED_ALERT_DAYS))
    context.log.info(f"purged {sync_rows} sync-log row(s) and {alert_rows} resolved alert(s)")


@dg.job(description="Retention for the ops tables.", executor_def=LIGHT_EXECUTOR)
def purge_ops_history_job() -> None:
    purge_ops_history()
