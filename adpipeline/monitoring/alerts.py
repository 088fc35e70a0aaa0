"""The alert state machine: one open alert per dedupe key, messages only on transitions.

Every signal (check evaluations, run failures, watchdog findings) goes through `raise_alert` / `resolve_alert`.
A new alert (or WARN becoming ERROR) and its resolution are the transitions that notify; `due_reminders`
repeats an open critical alert at the configured interval. Notifying means writing one row per routed sink
into ops.alert_deliveries in the same transaction as the alert (an outbox): `sinks.deliver_pending` sends them,
so a slow or dead sink never blocks a sensor, and an alert is never lost between the two.

Severity follows ARCHITECTURE: ERROR -> critical, WARN -> warning, recovery -> info ("resolved").
Every text passes through redaction before it is stored, logged or sent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

from adpipeline import clock
from adpipeline.config import AlertSink
from adpipeline.http.redact import redact

log = logging.getLogger("adpipeline.alerts")
_LOG_LEVEL = {"critical": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}

# What to do, per signal: the runbook step a message carries (checks refine it by check name in `check_action`).
RUNBOOK = {
    "asset_check": "Open the check in the Dagster UI: its description says what it measures; fix the load or the "
                   "data, then re-run the check.",
    "run_failure": "Open the run: the error names the source, scope and action; fix it, then re-execute from failure.",
    "schedule_health": "Start the schedule again (Dagster UI > Automation), then run `adpipeline doctor`.",
    "sensor_health": "Start the sensor again (Dagster UI > Automation), then run `adpipeline doctor`.",
    "run_health": "Open the run: terminate it if it hangs; find the step that does not finish.",
    "freshness": "Find why the asset's scheduled runs failed or did not start (Dagster UI > Runs, "
                 "`adpipeline doctor`), then re-run it.",
    "token_job_gap": "Check that the daemon runs and the Meta token schedule is started (`adpipeline doctor`).",
}
_CHECK_ACTIONS = [  # (check name prefix, runbook step)
    ("token_job_ran", RUNBOOK["token_job_gap"]),
    ("token_refresh", "The refresh failed while the token still works: see `adpipeline tokens status`; re-run the "
                      "token job; re-authenticate if it keeps failing."),
    ("token", "Re-authenticate: `adpipeline tokens exchange meta -` with a new short-lived token from the app "
              "(check with `adpipeline tokens status`)."),
    ("lateness", "Find why the last scheduled runs failed or did not start (Dagster UI > Runs, `adpipeline doctor`), "
                 "then re-run the feed."),
    ("all_scopes_loaded", "Open the latest failed run of this feed: the error names the scope and what to do; "
                          "re-execute from failure once fixed."),
]


def check_action(check_name: str) -> str:
    return next((action for prefix, action in _CHECK_ACTIONS if check_name.startswith(prefix)), RUNBOOK["asset_check"])


@dataclass(frozen=True)
class Alert:
    severity: str  # critical | warning | info
    signal: str  # e.g. "asset_check", "run_failure", "schedule_health"
    title: str
    message: str
    dedupe_key: str
    source: str | None = None
    scope: str | None = None
    asset_key: str | None = None
    dagster_run_id: str | None = None
    action: str | None = None
    link: str | None = None


def raise_alert(conn: psycopg.Connection, alert: Alert, sinks: Sequence[AlertSink] = (),
                now: datetime | None = None) -> bool:
    """Record, log and route an alert unless one with the same dedupe key is open; True if new.

    A different severity for the same key (WARN becoming ERROR) closes the old alert and opens a new one."""
    now = now or clock.now()
    open_row = conn.execute(
        "SELECT id, severity FROM ops.alerts WHERE dedupe_key = %s AND resolved_at IS NULL AND severity <> 'info'"
        " FOR UPDATE", (alert.dedupe_key,),
    ).fetchone()
    if open_row and open_row[1] == alert.severity:
        conn.commit()
        return False
    if open_row:
        conn.execute("UPDATE ops.alerts SET resolved_at = %s WHERE id = %s", (now, open_row[0]))
    title, message, action = redact(alert.title), redact(alert.message), redact(alert.action) or None
    alert_id = conn.execute(
        "INSERT INTO ops.alerts (severity, source, scope, signal, asset_key, title, message, dedupe_key, dagster_run_id,"
        " action, link, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (alert.severity, alert.source, alert.scope, alert.signal, alert.asset_key, title, message, alert.dedupe_key,
         alert.dagster_run_id, action, alert.link, now),
    ).fetchone()[0]
    _enqueue(conn, alert_id, "opened", sinks, now)
    conn.commit()
    log.log(_LOG_LEVEL[alert.severity], "[%s] %s: %s", alert.severity.upper(), title, message)
    return True


def resolve_alert(conn: psycopg.Connection, dedupe_key: str, message: str, sinks: Sequence[AlertSink] = (),
                  now: datetime | None = None) -> bool:
    """Close an open alert and record an info 'resolved' one, sent where the alert was; True if something was open."""
    at = now or clock.now()
    rows = conn.execute(
        "UPDATE ops.alerts SET resolved_at = %s WHERE dedupe_key = %s AND resolved_at IS NULL"
        " AND severity <> 'info' RETURNING id, severity, signal, title, source, scope, asset_key, link",
        (at, dedupe_key),
    ).fetchall()
    if not rows:
        conn.commit()
        return False
    opened_id, severity, signal, title, source, scope, asset_key, link = rows[0]
    resolved_id = conn.execute(
        "INSERT INTO ops.alerts (severity, source, scope, signal, asset_key, title, message, dedupe_key, link,"
        " created_at, resolved_at) VALUES ('info', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (source, scope, signal, asset_key, f"resolved: {title}", redact(message), dedupe_key, link, at, at),
    ).fetchone()[0]
    # sent only where the opening was sent (and only if it was: a reminder-less warning route still hears of it)
    routed = [s for s in sinks if s.routes(severity, source)]
    _enqueue(conn, resolved_id, "resolved", routed, at)
    conn.commit()
    log.info("[RESOLVED] %s: %s", title, redact(message))
    return True


def due_reminders(conn: psycopg.Connection, sinks: Sequence[AlertSink], interval: timedelta, now: datetime) -> int:
    """Queue a reminder for every open critical alert not notified for `interval`; the number queued."""
    rows = conn.execute(
        "SELECT id FROM ops.alerts WHERE resolved_at IS NULL AND severity = 'critical'"
        " AND coalesce(last_notified_at, created_at) <= %s FOR UPDATE SKIP LOCKED", (now - interval,),
    ).fetchall()
    for (alert_id,) in rows:
        _enqueue(conn, alert_id, "reminder", sinks, now)
        # marked even when no sink routes it, or it would be due on every tick
        conn.execute("UPDATE ops.alerts SET last_notified_at = %s WHERE id = %s", (now, alert_id))
    conn.commit()
    return len(rows)


def _enqueue(conn: psycopg.Connection, alert_id: int, kind: str, sinks: Sequence[AlertSink], now: datetime) -> None:
    row = conn.execute(
        "SELECT severity, signal, title, message, source, scope, asset_key, dagster_run_id, action, link, dedupe_key,"
        " created_at FROM ops.alerts WHERE id = %s", (alert_id,),
    ).fetchone()
    severity, signal, title, text, source, scope, asset_key, run_id, action, link, dedupe_key, created_at = row
    routed = [s for s in sinks if kind == "resolved" or s.routes(severity, source)]
    if not routed:
        return
    message = {"kind": kind, "severity": severity, "signal": signal, "title": title, "text": text, "source": source,
               "scope": scope, "asset_key": asset_key, "run_id": run_id, "action": action, "link": link,
               "dedupe_key": dedupe_key, "opened_at": created_at.isoformat(), "at": now.isoformat()}
    for sink in routed:
        conn.execute(
            "INSERT INTO ops.alert_deliveries (alert_id, sink, kind, message, next_attempt_at, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)", (alert_id, sink.name, kind, Jsonb(message), now, now),
        )
    conn.execute("UPDATE ops.alerts SET last_notified_at = %s, notify_count = notify_count + 1 WHERE id = %s",
                 (now, alert_id))


def open_alerts(conn: psycopg.Connection) -> list[dict]:
    """Open alerts, worst first, with their delivery state per sink."""
    rows = conn.execute(
        "SELECT a.id, a.severity, a.created_at, a.title, a.message, a.source, a.scope, a.action, a.link,"
        " a.notify_count, a.last_notified_at,"
        " (SELECT count(*) FROM ops.alert_deliveries d WHERE d.alert_id = a.id AND d.status = 'pending')"
        " FROM ops.alerts a WHERE a.resolved_at IS NULL AND a.severity <> 'info'"
        " ORDER BY a.severity = 'critical' DESC, a.created_at",
    ).fetchall()
    keys = ["id", "severity", "opened_at", "title", "message", "source", "scope", "action", "link", "notified",
            "last_notified_at", "undelivered"]
    return [dict(zip(keys, row)) for row in rows]
