"""GA4 property quotas in the sandbox: tokens per day (reset at midnight Pacific) and per hour, and
concurrent requests, charged per request and reported as `propertyQuota`; 429 RESOURCE_EXHAUSTED when
a request would exceed one."""

from __future__ import annotations

import math
import threading
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

PACIFIC = ZoneInfo("America/Los_Angeles")

STANDARD_LIMITS = {
    "tokensPerDay": 200_000,
    "tokensPerHour": 40_000,
    "concurrentRequests": 10,
    "serverErrorsPerProjectPerHour": 10,
    "potentiallyThresholdedRequestsPerHour": 120,
}
ADMIN_KEYS = {  # admin API names -> quota names
    "tokens_per_day": "tokensPerDay",
    "tokens_per_hour": "tokensPerHour",
    "concurrent_requests": "concurrentRequests",
}
MESSAGES = {
    "tokensPerDay": "Exhausted property tokens per day. Daily quota resets at midnight Pacific time.",
    "tokensPerHour": "Exhausted property tokens for a project per hour.",
    "concurrentRequests": "Exhausted concurrent requests quota.",
}


class QuotaExhausted(Exception):
    def __init__(self, quota: str) -> None:
        super().__init__(MESSAGES[quota])
        self.quota = quota


def token_cost(hits_scanned: int, rows_returned: int) -> int:
    """Tokens one runReport costs: grows with the data read and returned (GA4 does not publish its formula)."""
    return 1 + math.ceil(hits_scanned / 1000) + rows_returned // 1000


class QuotaBook:
    """Per-property consumption in the emulation's storage (a sandbox reset clears it)."""

    def __init__(self, store: dict[str, Any]) -> None:
        self.store = store
        self._lock = threading.Lock()

    def _entry(self, property_id: str) -> dict[str, Any]:
        return self.store.setdefault("quota", {}).setdefault(
            property_id, {"limits": {}, "day": (None, 0), "hour": (None, 0), "in_flight": 0}
        )

    @staticmethod
    def _buckets(now: datetime) -> tuple[str, str]:
        return now.astimezone(PACIFIC).date().isoformat(), now.strftime("%Y-%m-%dT%H")

    def limit(self, property_id: str, name: str) -> int:
        return self._entry(property_id)["limits"].get(name, STANDARD_LIMITS[name])

    def _used(self, entry: dict[str, Any], now: datetime) -> tuple[int, int]:
        day, hour = self._buckets(now)
        used_day = entry["day"][1] if entry["day"][0] == day else 0
        used_hour = entry["hour"][1] if entry["hour"][0] == hour else 0
        return used_day, used_hour

    def set(self, property_id: str, now: datetime, changes: dict[str, Any]) -> dict[str, Any]:
        """Admin: override limits (`tokens_per_day`, ...) and/or consumption (`consumed_per_day`, `consumed_per_hour`)."""
        unknown = set(changes) - {*ADMIN_KEYS, "consumed_per_day", "consumed_per_hour", "property_id"}
        if unknown:
            raise ValueError(f"unknown quota settings {sorted(unknown)}")
        with self._lock:
            entry = self._entry(property_id)
            for key, name in ADMIN_KEYS.items():
                if key in changes:
                    entry["limits"][name] = int(changes[key])
            day, hour = self._buckets(now)
            if "consumed_per_day" in changes:
                entry["day"] = (day, int(changes["consumed_per_day"]))
            if "consumed_per_hour" in changes:
                entry["hour"] = (hour, int(changes["consumed_per_hour"]))
        return self.snapshot(property_id, now)

    def enter(self, property_id: str) -> None:
        """A request starts: refuse it when the property's concurrent requests are all in use."""
        with self._lock:
            entry = self._entry(property_id)
            if entry["in_flight"] >= self.limit(property_id, "concurrentRequests"):
                raise QuotaExhausted("concurrentRequests")
            entry["in_flight"] += 1

    def leave(self, property_id: str) -> None:
        with self._lock:
            entry = self._entry(property_id)
            entry["in_flight"] = max(0, entry["in_flight"] - 1)

    def charge(self, property_id: str, now: datetime, cost: int) -> None:
        """Consume `cost` tokens, or refuse (consuming nothing) when the hour or the day cannot afford it."""
        with self._lock:
            entry = self._entry(property_id)
            used_day, used_hour = self._used(entry, now)
            if used_day + cost > self.limit(property_id, "tokensPerDay"):
                raise QuotaExhausted("tokensPerDay")
            if used_hour + cost > self.limit(property_id, "tokensPerHour"):
                raise QuotaExhausted("tokensPerHour")
            day, hour = self._buckets(now)
            entry["day"] = (day, used_day + cost)
            entry["hour"] = (hour, used_hour + cost)

    def snapshot(self, property_id: str, now: datetime, request_cost: int | None = None) -> dict[str, Any]:
        """`propertyQuota` as GA4 reports it after a request costing `request_cost`: `consumed` is what that
        request cost, `remaining` what is left of the window (Google's QuotaStatus). Without a request
        (the admin view), `consumed` is the window's total so far."""
        entry = self._entry(property_id)
        used_day, used_hour = self._used(entry, now)

        def status(name: str, used: int, cost: int | None) -> dict[str, int]:
            return {"consumed": used if cost is None else cost,
                    "remaining": max(0, self.limit(property_id, name) - used)}

        return {
            "tokensPerDay": status("tokensPerDay", used_day, request_cost),
            "tokensPerHour": status("tokensPerHour", used_hour, request_cost),
            "concurrentRequests": status("concurrentRequests", 0, None),
            "serverErrorsPerProjectPerHour": status("serverErrorsPerProjectPerHour", 0, None),
            "potentiallyThresholdedRequestsPerHour": status("potentiallyThresholdedRequestsPerHour", 0, None),
        }
