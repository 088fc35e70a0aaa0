"""Every alert threshold, as data, in one place (ARCHITECTURE, "Thresholds").

Checks, `tokens status`, sensors and `doctor` read these; no other module holds a threshold literal.
Severity mapping to alerts: ERROR -> critical, WARN -> warning, recovery -> info ("resolved").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum


@dataclass(frozen=True)
class Threshold:
    """WARN/ERROR limits of one signal. For 'remaining' signals a value BELOW a limit trips it;
    for 'age' signals a value ABOVE it does. `None` means the level does not exist for this signal."""

    signal: str
    kind: str  # "remaining" | "age" | "ratio_left"
    warn: timedelta | float | None
    error: timedelta | float | None
    origin: str

    def severity(self, value: timedelta | float) -> str | None:
        """'ERROR', 'WARN' or None for a measured value."""
        if self.kind == "age":
            if self.error is not None and value > self.error:
                return "ERROR"
            if self.warn is not None and value > self.warn:
                return "WARN"
            return None
        if self.error is not None and value < self.error:
            return "ERROR"
        if self.warn is not None and value < self.warn:
            return "WARN"
        return None

    def limits(self) -> str:
        """The levels this signal has, in words, for check descriptions: 'WARN above 2 h, ERROR above 4 h',
        'ERROR above 25 h', 'WARN below 14 days, ERROR below 7 days', 'WARN below 90 %'."""
        word = "above" if self.kind == "age" else "below"
        parts = []
        for level, limit in (("WARN", self.warn), ("ERROR", self.error)):
            if limit is None:
                continue
            if self.kind == "remaining" and limit == timedelta(0):
                parts.append(f"{level} when expired")
            else:
                parts.append(f"{level} {word} {_amount(limit)}")
        return ", ".join(parts)


def _amount(limit: timedelta | float) -> str:
    if not isinstance(limit, timedelta):
        return f"{limit:.0%}".replace("%", " %")
    if limit >= 2 * timedelta(days=1) and limit % timedelta(days=1) == timedelta(0):
        return f"{limit // timedelta(days=1)} days"
    if limit % timedelta(hours=1) == timedelta(0):
        return f"{limit // timedelta(hours=1)} h"
    return f"{limit // timedelta(minutes=1)} min"


H = timedelta(hours=1)
D = timedelta(days=1)

META_TOKEN_LIFETIME = Threshold("meta_token_lifetime", "remaining", 14 * D, 7 * D, "lengolf guide, dashboard query")
META_DATA_ACCESS = Threshold("meta_data_access_expiry", "remaining", 14 * D, timedelta(0), "Meta docs")
TOKEN_REFRESH_JOB_GAP = Threshold("token_refresh_job_gap", "age", None, 2 * H, "lengolf guide")
HOURLY_FEED_LATENESS = Threshold("hourly_feed_lateness", "age", 2 * H, 4 * H, "ADinsights, Breezeway runbook")
DAILY_FEED_LATENESS = Threshold("daily_feed_lateness", "age", None, 25 * H, "Breezeway runbook")
GA4_LATENESS = Threshold("ga4_lateness", "age", 12 * H, 24 * H, "ADinsights")
RUN_MAX_RUNTIME = Threshold("run_max_runtime", "age", None, 1 * H, "Breezeway runbook")
DAEMON_HEARTBEAT_STALE = Threshold("daemon_heartbeat_stale", "age", None, 5 * timedelta(minutes=1), "lengolf incident")
# a schedule/sensor is "not ticking" when its last tick is older than its due time by more than this
INSTIGATOR_TICK_GRACE = Threshold("instigator_tick_grace", "age", None, 10 * timedelta(minutes=1), "lengolf incident")
GA4_QUOTA_HEADROOM = Threshold("ga4_quota_headroom", "ratio_left", 0.20, None, "GA4 quota docs")
# rows seen by a full reconciliation / rows seen by the previous one ("record counts stable or growing")
FULL_RECONCILIATION_ROW_RATIO = Threshold("full_reconciliation_row_ratio", "ratio_left", 0.90, 0.50,
                                          "Breezeway runbook")

# A refresh attempt that failed while the token is still valid is a WARN with no numeric limit.
REFRESH_FAILED_SEVERITY = "WARN"

ALL = {t.signal: t for t in [META_TOKEN_LIFETIME, META_DATA_ACCESS, TOKEN_REFRESH_JOB_GAP, HOURLY_FEED_LATENESS,
                             DAILY_FEED_LATENESS, GA4_LATENESS, RUN_MAX_RUNTIME, GA4_QUOTA_HEADROOM,
                             DAEMON_HEARTBEAT_STALE, INSTIGATOR_TICK_GRACE, FULL_RECONCILIATION_ROW_RATIO]}
ALERT_SEVERITY = {"ERROR": "critical", "WARN": "warning", "RESOLVED": "info"}


class TokenHealth(str, Enum):
    HEALTHY = "HEALTHY"
    WARNING = "WARNING"
    EXPIRING_SOON = "EXPIRING_SOON"
    EXPIRED = "EXPIRED"


def token_health(
    *,
    platform: str,
    status: str,
    expires_at: datetime | None,
    data_access_expires_at: datetime | None,
    never_expires: bool,
    now: datetime,
) -> tuple[TokenHealth, str]:
    """Health of one stored token and a one-line reason (never containing the token)."""
    if status in ("expired", "invalid"):
        return TokenHealth.EXPIRED, f"token is {status}: manual re-authentication required"
    worst, reasons = TokenHealth.HEALTHY, []

    def note(health: TokenHealth, reason: str) -> None:
        nonlocal worst
        order = list(TokenHealth)
        worst = max(worst, health, key=order.index)
        reasons.append(reason)

    if platform == "meta":
        if expires_at is not None and not never_expires:
            left = expires_at - now
            if left <= timedelta(0):
                note(TokenHealth.EXPIRED, "token expired: manual re-authentication required")
            else:
                level = META_TOKEN_LIFETIME.severity(left)
                health = {"ERROR": TokenHealth.EXPIRING_SOON, "WARN": TokenHealth.WARNING}.get(level)
                note(health or TokenHealth.HEALTHY, f"expires in {_days(left)}")
        elif never_expires:
            reasons.append("never expires (system user)")
        if data_access_expires_at is not None:
            left = data_access_expires_at - now
            level = META_DATA_ACCESS.severity(left)
            if level == "ERROR":
                note(TokenHealth.EXPIRED, "data access expired: the user must log in to the app again")
            elif level == "WARN":
                note(TokenHealth.WARNING, f"data access expires in {_days(left)}")
    elif expires_at is not None:
        reasons.append(f"access token expires in {_days(expires_at - now)} (refreshed automatically)")
    if status == "refresh_failed":
        note(TokenHealth.WARNING, "last refresh attempt failed; the current token is still in use")
    return worst, "; ".join(reasons) or "ok"


def _days(delta: timedelta) -> str:
    if abs(delta) >= D:
        return f"{delta / D:.1f} days"
    return f"{delta / H:.1f} hours"
