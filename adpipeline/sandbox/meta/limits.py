"""Meta's rate limiting as the sandbox plays it: usage meters driven by the real request count.

Three kinds of meter, each a sliding window of calls over a budget (all on the sandbox clock):
    app                      -> X-App-Usage                  over budget: code 4
    ad account               -> X-Ad-Account-Usage           over budget: code 17 / 2446079
    business use case (BUC)  -> X-Business-Use-Case-Usage    over budget: 80000 (ads_insights), 80004 (ads_management)
The call that pushes a meter over its budget is refused and blocks that meter for `block_seconds`;
calls during the block are refused too, with `estimated_time_to_regain_access` (minutes) in the BUC
header. When the block ends the meter starts from zero. Refused calls are logged so tests can count
how many throttled responses each block served.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

TIER = "standard_access"
RATE_LIMIT_SUBCODE = 2446079


@dataclass
class Limits:
    window_seconds: float = 3600.0
    block_seconds: float = 300.0
    app_calls: int = 200_000
    account_calls: int = 100_000
    ads_insights_calls: int = 100_000
    ads_management_calls: int = 100_000

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown limit {name!r}; known: {sorted(known)}")
            number = float(value)
            if number <= 0:
                raise ValueError(f"limit {name} must be positive")
            setattr(self, name, number if name.endswith("seconds") else int(number))


@dataclass
class Meter:
    name: str
    budget_field: str
    code: int
    message: str
    calls: deque[float] = field(default_factory=deque)  # timestamps (epoch seconds) inside the window
    blocked_until: float = 0.0

    def prune(self, now: float, window: float) -> None:
        while self.calls and self.calls[0] <= now - window:
            self.calls.popleft()

    def percent(self, limits: Limits) -> float:
        return 100.0 * len(self.calls) / getattr(limits, self.budget_field)

    def reset_seconds(self, now: float, limits: Limits) -> float:
        """Seconds until this meter is back to zero."""
        if self.blocked_until > now:
            return self.blocked_until - now
        return max(0.0, limits.window_seconds - (now - self.calls[-1])) if self.calls else 0.0


@dataclass
class Throttled:
    meter: Meter
    regain_seconds: float


class RateLimiter:
    """All meters of one sandbox; `charge` is called once per Graph request (under the event loop)."""

    def __init__(self) -> None:
        self.limits = Limits()
        self.app = Meter("app", "app_calls", 4, "(#4) Application request limit reached")
        self.accounts: dict[str, Meter] = {}
        self.buc: dict[tuple[str, str], Meter] = {}
        self.log: list[dict[str, Any]] = []  # one entry per refused call

    def _account(self, account_id: str) -> Meter:
        if account_id not in self.accounts:
            self.accounts[account_id] = Meter(f"account:{account_id}", "account_calls", 17,
                                              "(#17) User request limit reached")
        return self.accounts[account_id]

    def _buc(self, account_id: str, usage_type: str) -> Meter:
        key = (account_id, usage_type)
        if key not in self.buc:
            code = 80000 if usage_type == "ads_insights" else 80004
            what = "from" if code == 80000 else "to"
            self.buc[key] = Meter(
                f"buc:{account_id}:{usage_type}", f"{usage_type}_calls", code,
                f"(#{code}) There have been too many calls {what} this ad-account. Wait a bit and try again. "
                "For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
            )
        return self.buc[key]

    def meters(self, account_id: str | None, usage_type: str | None) -> list[Meter]:
        found = [self.app]
        if account_id:
            found.append(self._account(account_id))
            if usage_type:
                found.append(self._buc(account_id, usage_type))
        return found

    def charge(self, now_dt: datetime, account_id: str | None, usage_type: str | None) -> Throttled | None:
        """Count one call; the meter that refuses it, if any."""
        now, limits = now_dt.timestamp(), self.limits
        meters = self.meters(account_id, usage_type)
        for meter in meters:
            if meter.blocked_until > now:
                return self._refuse(meter, now, first=False)
            if meter.blocked_until:  # the block is over: Meta lets the app start afresh
                meter.blocked_until = 0.0
                meter.calls.clear()
            meter.prune(now, limits.window_seconds)
        for meter in meters:
            meter.calls.append(now)
        for meter in meters:
            if len(meter.calls) > getattr(limits, meter.budget_field):
                meter.blocked_until = now + limits.block_seconds
                return self._refuse(meter, now, first=True)
        return None

    def _refuse(self, meter: Meter, now: float, first: bool) -> Throttled:
        self.log.append({"meter": meter.name, "at": now, "blocked_until": meter.blocked_until, "first": first})
        return Throttled(meter, meter.blocked_until - now)

    def headers(self, now_dt: datetime, account_id: str | None, account_number: str | None) -> dict[str, str]:
        """The three usage headers for a response about `account_id` (or only the app header)."""
        now, limits = now_dt.timestamp(), self.limits
        app_pct = self.app.percent(limits)
        headers = {"X-App-Usage": json.dumps(_usage(app_pct))}
        if not account_id:
            return headers
        account = self._account(account_id)
        headers["X-Ad-Account-Usage"] = json.dumps({
            "acc_id_util_pct": round(account.percent(limits), 2),
            "reset_time_duration": math.ceil(account.reset_seconds(now, limits)),
            "ads_api_access_tier": TIER,
        })
        entries = []
        for usage_type in ("ads_insights", "ads_management"):
            meter = self.buc.get((account_id, usage_type))
            if meter is None:
                continue
            regain = max(0.0, meter.blocked_until - now)
            entries.append({"type": usage_type, **_usage(meter.percent(limits)),
                            "estimated_time_to_regain_access": math.ceil(regain / 60), "ads_api_access_tier": TIER})
        if entries:
            headers["X-Business-Use-Case-Usage"] = json.dumps({account_number or account_id: entries})
        return headers

    def snapshot(self, now_dt: datetime) -> dict[str, Any]:
        now, limits = now_dt.timestamp(), self.limits
        meters = [self.app, *self.accounts.values(), *self.buc.values()]
        blocks: dict[str, int] = {}
        for entry in self.log:
            key = f"{entry['meter']}@{entry['blocked_until']}"
            blocks[key] = blocks.get(key, 0) + 1
        return {
            "limits": asdict(limits),
            "meters": {m.name: {"percent": round(m.percent(limits), 2), "calls": len(m.calls),
                                "blocked_for_seconds": max(0.0, m.blocked_until - now)} for m in meters},
            "throttled_responses": len(self.log),
            "throttled_per_block": blocks,
            "log": self.log[-200:],
        }


def _usage(pct: float) -> dict[str, int]:
    # Meta reports whole percentages; CPU and time track the call count loosely here
    return {"call_count": int(pct), "total_cputime": int(pct * 0.5), "total_time": int(pct * 0.7)}
