"""Shared check builders: every signal of the thresholds table, implemented once.

Each signal has a pure evaluator (rows in, `Evaluation` out, `now` passed in, so boundaries are testable)
and a builder that wraps it in a standalone `@asset_check` (so the checks-only job can run it without
materializing anything). No threshold check is blocking: a token check must never stop extraction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import dagster as dg
import psycopg
from psycopg import sql

from adpipeline import clock as pipeline_clock
from adpipeline.monitoring import thresholds as T
from adpipeline.monitoring.cadence import lateness
from adpipeline.monitoring.runbooks import RUNBOOK, runbook
from adpipeline.warehouse.resource import WarehouseResource
from adpipeline.warehouse.tokens import Token, token_states


@dataclass(frozen=True)
class Evaluation:
    severity: str | None  # None = passed; "WARN" | "ERROR"
    description: str
    metadata: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.severity is None

    def result(self, extra: dict | None = None) -> dg.AssetCheckResult:
        severity = dg.AssetCheckSeverity.ERROR if self.severity == "ERROR" else dg.AssetCheckSeverity.WARN
        return dg.AssetCheckResult(
            passed=self.passed, severity=severity, description=self.description,
            metadata={"summary": self.description, **self.metadata, **(extra or {})},
        )


def _hours(delta: timedelta | None) -> float | None:
    return None if delta is None else round(delta / timedelta(hours=1), 2)


def _limits(threshold: T.Threshold) -> dict:
    def fmt(v):
        return _hours(v) if isinstance(v, timedelta) else v
    return {"warn_threshold_hours": fmt(threshold.warn), "error_threshold_hours": fmt(threshold.error)}


def _worse(a: str | None, b: str | None) -> str | None:
    order = [None, "WARN", "ERROR"]
    return max(a, b, key=order.index)


# -- sync-log signals ------------------------------------------------------------------------------

NOT_LOADED = ("failed", "partial")  # sync-log statuses "all scopes loaded" reports: partial data is not success


def last_successes(conn: psycopg.Connection, source: str, entity: str) -> dict[str, datetime]:
    """scope -> when it last landed data: a `partial` sync counts (what it loaded is fresh; the gap is the
    "all scopes loaded" check's to report, not lateness's)."""
    rows = conn.execute(
        "SELECT scope, max(finished_at) FROM ops.etl_sync_log"
        " WHERE source = %s AND entity = %s AND status IN ('success', 'partial') GROUP BY scope",
        (source, entity),
    ).fetchall()
    return dict(rows)


def latest_attempts(conn: psycopg.Connection, source: str, entity: str, *, days_since: date | None = None
                    ) -> dict[str, tuple[str, str | None, datetime]]:
    """scope -> (status, error, finished_at) of its most recent finished attempt.

    With `days_since` (day-partitioned feeds: one sync per (scope, day)), the latest attempt of each day from
    then on counts, and a scope's verdict is its worst day: a failed older day is not masked by a later
    success of another day."""
    if days_since is None:
        rows = conn.execute(
            "SELECT DISTINCT ON (scope) scope, status, error, finished_at FROM ops.etl_sync_log"
            " WHERE source = %s AND entity = %s AND status <> 'running' ORDER BY scope, finished_at DESC, id DESC",
            (source, entity),
        ).fetchall()
        return {scope: (status, error, finished) for scope, status, error, finished in rows}
    newest: dict[str, tuple[str, str | None, datetime]] = {}
    failed: dict[str, list[tuple[date, str | None, datetime]]] = {}
    for scope, day, status, error, finished in conn.execute(
        "SELECT DISTINCT ON (scope, window_start) scope, window_start, status, error, finished_at FROM ops.etl_sync_log"
        " WHERE source = %s AND entity = %s AND status <> 'running' AND window_start >= %s"
        " ORDER BY scope, window_start, finished_at DESC, id DESC", (source, entity, days_since),
    ).fetchall():
        if status in NOT_LOADED:
            failed.setdefault(scope, []).append((day, error, finished))
        if scope not in newest or finished > newest[scope][2]:
            newest[scope] = (status, error, finished)
    for scope, days in failed.items():  # the days first: they say what to rerun
        _, error, finished = days[-1]
        newest[scope] = ("failed", f"failed days {', '.join(str(d) for d, _, _ in days)}: {error or 'failed'}", finished)
    return newest


def evaluate_lateness(
    successes: dict[str, datetime], *, scopes: Sequence[str], cron: str, timezone: str,
    threshold: T.Threshold, now: datetime, what: str,
) -> Evaluation:
    """Worst lateness over the expected scopes; a scope that never succeeded is an ERROR."""
    per_scope, worst, worst_scope, never = {}, timedelta(0), None, []
    for scope in scopes:
        late = lateness(successes.get(scope), now, cron, timezone)
        if late is None:
            never.append(scope)
            continue
        per_scope[scope] = {"last_success": successes[scope].isoformat(), "lateness_hours": _hours(late)}
        if worst_scope is None or late > worst:
            worst, worst_scope = late, scope
    metadata = {"cadence": cron, "timezone": timezone, "lateness_hours": _hours(worst), "worst_scope": worst_scope,
                **_limits(threshold), "scopes": dg.MetadataValue.json(per_scope)}
    if never:
        return Evaluation("ERROR", f"{what}: never loaded for {', '.join(never)}", {**metadata, "never_loaded": never})
    severity = threshold.severity(worst)
    if severity is None:
        return Evaluation(None, f"{what}: on time (worst lateness {_hours(worst)} h, {worst_scope})", metadata)
    return Evaluation(severity, f"{what}: {_hours(worst)} h late for {worst_scope} against cadence '{cron}' "
                                f"({severity} above {_limits(threshold)[severity.lower() + '_threshold_hours']} h)", metadata)


def evaluate_all_scopes_loaded(
    attempts: dict[str, tuple[str, str | None, datetime]], *, scopes: Sequence[str], what: str
) -> Evaluation:
    failed = {s: attempts[s][1] for s in scopes if s in attempts and attempts[s][0] in NOT_LOADED}
    missing = [s for s in scopes if s not in attempts]
    metadata = {"expected_scopes": len(scopes), "failed_scopes": sorted(failed), "never_attempted": missing,
                "errors": dg.MetadataValue.json({s: (e or "")[:300] for s, e in failed.items()})}
    if failed or missing:
        # a day-partitioned feed names the failed days too: they say what to rerun
        named = [f"{s} ({failed[s].split(':', 1)[0]})" if (failed[s] or "").startswith("failed days ") else s
                 for s in sorted(failed)]
        parts = [f"latest load failed for {', '.join(named)}" if failed else "",
                 f"never loaded: {', '.join(missing)}" if missing else ""]
        return Evaluation("ERROR", f"{what}: " + "; ".join(p for p in parts if p), metadata)
    return Evaluation(None, f"{what}: all {len(scopes)} scopes loaded", metadata)


# -- data arrival (dbt source freshness) -----------------------------------------------------------

def newest_loaded_at(conn: psycopg.Connection, schema: str, table: str, field: str,
                     where: str | None = None) -> datetime | None:
    """max(loaded_at_field) of a table, the measure `dbt source freshness` takes (with the source's filter)."""
    query = sql.SQL("SELECT max({f}) FROM {t}").format(f=sql.Identifier(field), t=sql.Identifier(schema, table))
    if where:  # the dbt source's own `filter`, project code
        query = sql.SQL("{q} WHERE {w}").format(q=query, w=sql.SQL(where))
    return conn.execute(query).fetchone()[0]


def evaluate_source_freshness(newest: datetime | None, *, cron: str | None, timezone: str, threshold: T.Threshold,
                              now: datetime, what: str) -> Evaluation:
    """Age of the newest row, as dbt measures it, except that the feed's quiet hours do not count (the same rule
    as lateness): an hourly 06:00-22:00 feed whose last rows landed at 22:00 is not stale at 05:00."""
    metadata = {"max_loaded_at": newest.isoformat() if newest else None, "cadence": cron, **_limits(threshold)}
    if newest is None:
        return Evaluation("ERROR", f"{what}: no rows loaded yet", metadata)
    age = lateness(newest, now, cron, timezone) if cron else max(now - newest, timedelta(0))
    metadata["age_hours"] = _hours(age)
    severity = threshold.severity(age)
    if severity is None:
        return Evaluation(None, f"{what}: fresh (newest rows {_hours(age)} h old against the cadence)", metadata)
    limit = _limits(threshold)[severity.lower() + "_threshold_hours"]
    return Evaluation(severity, f"{what}: no new rows for {_hours(age)} h ({severity} above {limit} h), although "
                                "its loads may succeed: check that the API still returns data", metadata)


def source_freshness_check(asset_key, *, schema: str, table: str, loaded_at_field: str, threshold: T.Threshold,
                           cron: str | None, timezone: str, where: str | None = None,
                           **kw) -> dg.AssetChecksDefinition:
    what = f"{schema}.{table}"

    def evaluate(conn, now):
        newest = newest_loaded_at(conn, schema, table, loaded_at_field, where)
        return evaluate_source_freshness(newest, cron=cron, timezone=timezone, threshold=threshold, now=now,
                                         what=what)

    quiet = f"; measured against cadence '{cron}' ({timezone}), so hours when no load was due do not count" if cron else ""
    return build_check(asset_key, "dbt_source_freshness",
                       f"dbt source freshness of {what}: age of max({loaded_at_field}), the time new rows last "
                       f"landed, with the dbt source's thresholds: {threshold.limits()}{quiet}.",
                       evaluate, scheduled=True, **kw)


# -- token signals ---------------------------------------------------------------------------------

def _token_basics(token: Token | None) -> dict:
    if token is None:
        return {}
    return {"expires_at": token.expires_at.isoformat() if token.expires_at else None,
            "never_expires": token.never_expires, "status": token.status}


def evaluate_token_lifetime(token: Token | None, now: datetime, what: str) -> Evaluation:
    if token is None:
        return Evaluation("ERROR", f"{what}: no token stored yet")
    meta = _token_basics(token)
    if token.status in ("expired", "invalid"):
        return Evaluation("ERROR", f"{what}: token {token.status}: manual re-authentication required", meta)
    if token.never_expires:
        return Evaluation(None, f"{what}: token never expires (system user)", meta)
    if token.expires_at is None:
        return Evaluation("WARN", f"{what}: token expiry unknown (not inspected yet)", meta)
    left = token.expires_at - now
    meta.update(days_left=round(left / timedelta(days=1), 2),
                warn_below_days=T.META_TOKEN_LIFETIME.warn.days, error_below_days=T.META_TOKEN_LIFETIME.error.days)
    if left <= timedelta(0):
        return Evaluation("ERROR", f"{what}: token expired: manual re-authentication required", meta)
    severity = T.META_TOKEN_LIFETIME.severity(left)
    return Evaluation(severity, f"{what}: token expires in {meta['days_left']} days", meta)


def evaluate_data_access(token: Token | None, now: datetime, what: str) -> Evaluation:
    if token is None or token.data_access_expires_at is None:
        return Evaluation(None, f"{what}: no data-access expiry reported", _token_basics(token))
    left = token.data_access_expires_at - now
    meta = {"data_access_expires_at": token.data_access_expires_at.isoformat(),
            "days_left": round(left / timedelta(days=1), 2), "warn_below_days": T.META_DATA_ACCESS.warn.days}
    severity = T.META_DATA_ACCESS.severity(left)
    if severity == "ERROR":
        return Evaluation("ERROR", f"{what}: data access expired: the user must log in to the app again", meta)
    return Evaluation(severity, f"{what}: data access expires in {meta['days_left']} days", meta)


def evaluate_refresh_attempt(token: Token | None, what: str) -> Evaluation:
    if token is None or token.last_refresh_succeeded is not False:
        return Evaluation(None, f"{what}: last refresh attempt did not fail", _token_basics(token))
    meta = {**_token_basics(token), "last_refresh_attempt_at":
            token.last_refresh_attempt_at.isoformat() if token.last_refresh_attempt_at else None,
            "last_error": (token.last_error or "")[:300]}
    return Evaluation(T.REFRESH_FAILED_SEVERITY, f"{what}: last refresh attempt failed; still using the current "
                                                 "token while it is valid", meta)


def evaluate_refresh_job_ran(token: Token | None, now: datetime, what: str) -> Evaluation:
    last = token.last_checked_at if token else None
    if last is None:
        return Evaluation("ERROR", f"{what}: the token job has never run")
    age = now - last
    meta = {"last_checked_at": last.isoformat(), "age_hours": _hours(age), **_limits(T.TOKEN_REFRESH_JOB_GAP)}
    severity = T.TOKEN_REFRESH_JOB_GAP.severity(age)
    if severity:
        return Evaluation(severity, f"{what}: the token job has not run for {_hours(age)} h", meta)
    return Evaluation(None, f"{what}: the token job ran {_hours(age)} h ago", meta)


def evaluate_token_health(tokens: dict[str, Token], *, platform: str, scopes: Sequence[str], now: datetime,
                          what: str) -> Evaluation:
    """Auto-refreshed tokens (Breezeway regions, GA4): EXPIRED is an ERROR, a failing refresh a WARN."""
    severity, per_scope = None, {}
    for scope in scopes:
        token = tokens.get(scope)
        if token is None:
            per_scope[scope] = "no token yet (created on first load)"
            continue
        health, reason = T.token_health(platform=platform, status=token.status, expires_at=token.expires_at,
                                        data_access_expires_at=token.data_access_expires_at,
                                        never_expires=token.never_expires, now=now)
        per_scope[scope] = f"{health.value}: {reason}"
        level = {T.TokenHealth.EXPIRED: "ERROR", T.TokenHealth.EXPIRING_SOON: "ERROR", T.TokenHealth.WARNING: "WARN"}
        severity = _worse(severity, level.get(health))
    bad = {s: r for s, r in per_scope.items() if not r.startswith(("HEALTHY", "no token"))}
    description = f"{what}: " + ("; ".join(f"{s} {r}" for s, r in bad.items()) if bad else "all tokens healthy")
    return Evaluation(severity, description, {"scopes": dg.MetadataValue.json(per_scope)})


# -- builders: standalone asset checks -------------------------------------------------------------

CheckFn = Callable[[psycopg.Connection, datetime], Evaluation]
# Declared on a check's spec: the checks-only job re-evaluates it on its schedule even when nothing materializes
# (a signal that changes with time alone: lateness, token lifetimes, failed scopes waiting for a rerun).
SCHEDULED = "adpipeline/scheduled_check"


def build_check(asset_key: dg.AssetKey | Sequence[str], name: str, description: str, evaluate: CheckFn,
                *, clock: Callable[[], datetime] = pipeline_clock.now, blocking: bool = False,
                scheduled: bool = False) -> dg.AssetChecksDefinition:
    """A standalone @asset_check that runs `evaluate(conn, now)` on the warehouse. Non-blocking unless it is
    a data-quality check that protects marts from wrong numbers (never a threshold check). `scheduled` marks
    it for the checks-only job (`SCHEDULED` in its metadata)."""

    @dg.asset_check(asset=dg.AssetKey(asset_key) if not isinstance(asset_key, dg.AssetKey) else asset_key,
                    name=name, description=description, blocking=blocking,
                    metadata={RUNBOOK: runbook(name), **({SCHEDULED: True} if scheduled else {})})
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connection() as conn:
            # the check page shows an evaluation's metadata, not the definition's: the runbook link goes in both
            return evaluate(conn, clock()).result({RUNBOOK: runbook(name)})

    return _check


def _label(asset_key) -> str:
    return "/".join(asset_key.path if isinstance(asset_key, dg.AssetKey) else asset_key)


def lateness_check(asset_key, *, source: str, entity: str, scopes: Sequence[str], cron: str, timezone: str,
                   threshold: T.Threshold, name: str = "lateness", **kw) -> dg.AssetChecksDefinition:
    what = _label(asset_key)

    def evaluate(conn, now):
        return evaluate_lateness(last_successes(conn, source, entity), scopes=scopes, cron=cron, timezone=timezone,
                                 threshold=threshold, now=now, what=what)

    return build_check(asset_key, name, f"Lateness against cadence '{cron}' ({timezone}) from ops.etl_sync_log: "
                       f"{threshold.limits()}.", evaluate, scheduled=True, **kw)


def all_scopes_loaded_check(asset_key, *, source: str, entity: str, scopes: Sequence[str],
                            name: str = "all_scopes_loaded", per_day_for: int | None = None,
                            **kw) -> dg.AssetChecksDefinition:
    """`per_day_for`: a day-partitioned feed, judged per (scope, day) over that many days back."""
    what = _label(asset_key)

    def evaluate(conn, now):
        since = None if per_day_for is None else (now - timedelta(days=per_day_for)).date()
        return evaluate_all_scopes_loaded(latest_attempts(conn, source, entity, days_since=since), scopes=scopes,
                                          what=what)

    scope = f"of any (scope, day) of the last {per_day_for} days" if per_day_for else "of any expected scope"
    return build_check(asset_key, name, f"ERROR while the latest load {scope} failed or never ran "
                       "(partial data is never reported as success).", evaluate, scheduled=True, **kw)


def meta_style_token_checks(asset_key, *, platform: str, scope: str, api: Callable[[], str] | None = None,
                            **kw) -> list[dg.AssetChecksDefinition]:
    """Lifetime, data-access expiry, refresh attempt failed, refresh job ran: for long-lived tokens.
    `api`: the API in use (read when the check runs); the token stored for another API is not judged."""

    def token(conn) -> Token | None:
        return next((t for t in token_states(conn, platform, api() if api else None) if t.scope == scope), None)

    what = f"{platform} token ({scope})"
    return [
        build_check(asset_key, "token_lifetime", f"Token lifetime left: {T.META_TOKEN_LIFETIME.limits()}, or "
                    "expired.", lambda conn, now: evaluate_token_lifetime(token(conn), now, what), scheduled=True, **kw),
        build_check(asset_key, "token_data_access", f"Data-access expiry: {T.META_DATA_ACCESS.limits()}.",
                    lambda conn, now: evaluate_data_access(token(conn), now, what), scheduled=True, **kw),
        build_check(asset_key, "token_refresh_attempt", "WARN when the last refresh attempt failed while the token "
                    "is still valid.", lambda conn, now: evaluate_refresh_attempt(token(conn), what), scheduled=True, **kw),
        build_check(asset_key, "token_job_ran", f"When the token job last ran: {T.TOKEN_REFRESH_JOB_GAP.limits()}.",
                    lambda conn, now: evaluate_refresh_job_ran(token(conn), now, what), scheduled=True, **kw),
    ]


def token_health_check(asset_key, *, platform: str, scopes: Sequence[str], name: str = "token_health",
                       api: Callable[[], str] | None = None, **kw) -> dg.AssetChecksDefinition:
    """`api`: the API in use (read when the check runs); tokens stored for another API are not judged."""
    what = f"{platform} tokens"

    def evaluate(conn, now):
        tokens = {t.scope: t for t in token_states(conn, platform, api() if api else None)}
        return evaluate_token_health(tokens, platform=platform, scopes=scopes, now=now, what=what)

    return build_check(asset_key, name, "ERROR when a scope's token is expired or invalid (re-authenticate); WARN "
                       "when its last refresh failed.", evaluate, scheduled=True, **kw)

