"""Alert sinks: the log and `ops.alerts`, deduplicated while an alert is open.

Severity follows ARCHITECTURE: ERROR -> critical, WARN -> warning, recovery -> info ("resolved").
Every message passes through redaction before it is stored or logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from adpipeline import clock
from adpipeline.http.redact import redact

log = logging.getLogger("adpipeline.alerts")
_LOG_LEVEL = {"critical": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}


@dataclass(frozen=True)
class Alert:
    severity: str  # critical | warning | info
    signal: str  # e.g. "asset_check", "run_failure", "schedule_stopped"
    title: str
    message: str
    dedupe_key: str
    source: str | None = None
    scope: str | None = None
    asset_key: str | None = None
    dagster_run_id: str | None = None


def raise_alert(conn: psycopg.Connection, alert: Alert) -> bool:
    """Record and log an alert unless one with the same dedupe key is open; True if new.

    A different severity for the same key (WARN becoming ERROR) closes the old alert and opens a new one."""
    open_row = conn.execute(
        "SELECT id, severity FROM ops.alerts WHERE dedupe_key = %s AND resolved_at IS NULL AND severity <> 'info'",
        (alert.dedupe_key,),
    ).fetchone()
    if open_row and open_row[1] == alert.severity:
        return False
    if open_row:
        conn.execute("UPDATE ops.alerts SET resolved_at = %s WHERE id = %s", (clock.now(), open_row[0]))
    title, message = redact(alert.title), redact(alert.message)
    conn.execute(
        "INSERT INTO ops.alerts (severity, source, scope, signal, asset_key, title, message, dedupe_key, dagster_run_id,"
        " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (alert.severity, alert.source, alert.scope, alert.signal, alert.asset_key, title, message, alert.dedupe_key,
         alert.dagster_run_id, clock.now()),
    )
    conn.commit()
    log.log(_LOG_LEVEL[alert.severity], "[%s] %s: %s", alert.severity.upper(), title, message)
    return True


def resolve_alert(conn: psycopg.Connection, dedupe_key: str, message: str) -> bool:
    """Close an open alert and record an info 'resolved' one; True if something was open."""
    rows = conn.execute(
        "UPDATE ops.alerts SET resolved_at = %s WHERE dedupe_key = %s AND resolved_at IS NULL"
        " AND severity <> 'info' RETURNING signal, title, source, scope, asset_key",
        (at := clock.now(), dedupe_key),
    ).fetchall()
    if not rows:
        conn.commit()
        return False
    signal, title, source, scope, asset_key = rows[0]
    conn.execute(
        "INSERT INTO ops.alerts (severity, source, scope, signal, asset_key, title, message, dedupe_key, created_at,"
        " resolved_at) VALUES ('info', %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (source, scope, signal, asset_key, f"resolved: {title}", redact(message), dedupe_key, at, at),
    )
    conn.commit()
    log.info("[RESOLVED] %s: %s", title, redact(message))
    return True
