"""The GA4 Data API client: the shared `ApiClient` plus what GA4 does differently.

- auth: a Bearer token from `Ga4Auth` before every attempt; a 401 drops the token and retries once
  (another process may have held a token the API no longer accepts);
- quota: every response's `propertyQuota` (`consumed`: what THAT request cost; `remaining`: what is left of
  the window, per Google's QuotaStatus) feeds a `QuotaGovernor` that slows down before exhaustion
  (spreads the hour's remaining tokens over the rest of the hour, waits for the next hour when they are
  gone, stops before the day's are) instead of waiting for 429s;
- 429 RESOURCE_EXHAUSTED is classified by kind: concurrent requests -> a short wait; tokens per hour,
  thresholded requests, server errors -> wait for the next hour; tokens per day -> wait for midnight
  Pacific, which is longer than any run waits, so the run fails at once with the reset time;
- 500/503: the shared bounded exponential backoff with jitter.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import requests

from adpipeline import clock
from adpipeline.http import ApiClient, ApiError, ErrorKind, OffsetPaging, RequestSpec, RetryPolicy
from adpipeline.monitoring import thresholds as T
from adpipeline.sources.ga4.auth import Ga4Auth

DEFAULT_BASE_URL = "https://analyticsdata.googleapis.com"
MAX_PAGE_SIZE = 250_000  # GA4 never returns more rows per request, whatever the limit
PACIFIC = ZoneInfo("America/Los_Angeles")
_PROPERTY = re.compile(r"properties/(\d+):runReport")


def seconds_to_next_hour(now: datetime) -> float:
    top = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return (top - now).total_seconds()


def seconds_to_pacific_midnight(now: datetime) -> float:
    local = now.astimezone(PACIFIC)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=PACIFIC)
    return (midnight - now).total_seconds()


class QuotaKind(enum.Enum):
    CONCURRENT = "concurrent"  # "Exhausted concurrent requests quota."
    HOURLY = "hourly"  # tokens per hour, potentially thresholded requests, server errors (all per hour)
    DAILY = "daily"  # tokens per day (resets at midnight Pacific)

    @classmethod
    def of(cls, message: str) -> QuotaKind | None:
        text = message.lower()
        if "concurrent" in text:
            return cls.CONCURRENT
        if "per day" in text or "daily" in text:
            return cls.DAILY
        if "per hour" in text or "hourly" in text or "thresholded" in text or "server errors" in text:
            return cls.HOURLY
        return None


STANDARD_TOKENS_PER_DAY, STANDARD_TOKENS_PER_HOUR = 200_000, 40_000  # GA360: 2,000,000 and 400,000


@dataclass(frozen=True)
class QuotaPolicy:
    slow_below: float = 0.25  # pace requests once less than this share of the hour's tokens is left
    tokens_per_day: int = STANDARD_TOKENS_PER_DAY  # the property's limits (propertyQuota reports no limit)
    tokens_per_hour: int = STANDARD_TOKENS_PER_HOUR
    # below this share of the day's tokens left (the quota_headroom check's WARN), requests are spread over
    # what is left of the day (until midnight Pacific)
    slow_below_day: float = T.GA4_QUOTA_HEADROOM.warn
    concurrent_wait: float = 2.0  # seconds before retrying after "Exhausted concurrent requests quota."
    max_wait: float = 3660.0  # the longest one quota wait inside a run: an hour's reset, not a day's


@dataclass(frozen=True)
class QuotaState:
    """One `propertyQuota` reading: `*_consumed` is what the request cost, `*_remaining` what is left."""

    day_consumed: int
    day_remaining: int
    hour_consumed: int
    hour_remaining: int

    @classmethod
    def from_json(cls, quota: dict[str, Any] | None) -> QuotaState | None:
        try:
            day, hour = quota["tokensPerDay"], quota["tokensPerHour"]  # type: ignore[index]
            return cls(int(day.get("consumed", 0)), int(day["remaining"]),
                       int(hour.get("consumed", 0)), int(hour["remaining"]))
        except (KeyError, TypeError, ValueError):
            return None

    def day_share_left(self, tokens_per_day: int = STANDARD_TOKENS_PER_DAY) -> float:
        """The share of the day's tokens left: remaining / the property's daily limit (not consumed +
        remaining: consumed is one request's cost)."""
        return min(1.0, self.day_remaining / tokens_per_day) if tokens_per_day > 0 else 1.0


RECENT_COSTS = 5  # the next request's cost is estimated as the most any of the last few cost


@dataclass
class QuotaGovernor:
    """Paces one client's requests per property from the quota the API last reported."""

    policy: QuotaPolicy
    now: Callable[[], datetime]
    sleep: Callable[[float], None]
    log: Any
    readings: dict[str, QuotaState] = field(default_factory=dict)
    costs: dict[str, int] = field(default_factory=dict)  # tokens a request costs: the most of the recent ones
    recent: dict[str, deque[int]] = field(default_factory=dict)
    waits: list[tuple[str, float]] = field(default_factory=list)  # (reason, seconds) of every wait

    def observe(self, property_id: str, quota: dict[str, Any] | None) -> None:
        reading = QuotaState.from_json(quota)
        if reading is None:
            return
        recent = self.recent.setdefault(property_id, deque(maxlen=RECENT_COSTS))
        recent.append(max(reading.day_consumed, reading.hour_consumed))  # what this request cost
        self.costs[property_id] = max(1, *recent)
        self.readings[property_id] = reading

    def before_request(self, property_id: str) -> None:
        reading = self.readings.get(property_id)
        if reading is None:
            return
        cost, now = self.costs.get(property_id, 1), self.now()
        if reading.day_remaining < cost:
            self._wait(property_id, "daily", seconds_to_pacific_midnight(now) + 1,
                       f"daily property tokens nearly exhausted ({reading.day_remaining} left, a request costs "
                       f"~{cost}); the quota resets at midnight Pacific")
            return
        hour_total = self.policy.tokens_per_hour
        if reading.hour_remaining < cost:
            self._wait(property_id, "hourly", seconds_to_next_hour(now) + 1,
                       f"hourly property tokens nearly exhausted ({reading.hour_remaining} left)")
        elif hour_total and reading.hour_remaining < self.policy.slow_below * hour_total:
            # spread what is left of the hour's tokens evenly over what is left of the hour
            pace = seconds_to_next_hour(now) * cost / reading.hour_remaining
            self.waits.append(("pace", pace))
            self.log.info("ga4 properties/%s: %d of %d hourly tokens left; pacing requests %.1fs apart",
                          property_id, reading.hour_remaining, hour_total, pace)
            self.sleep(pace)
        elif reading.day_remaining < self.policy.slow_below_day * self.policy.tokens_per_day:
            pace = seconds_to_pacific_midnight(now) * cost / reading.day_remaining
            self.waits.append(("pace_daily", pace))
            self.log.warning("ga4 properties/%s: %.1f%% of the day's %d tokens left; pacing requests %.1fs apart "
                             "until midnight Pacific", property_id, 100 * reading.day_share_left(self.policy.tokens_per_day),
                             self.policy.tokens_per_day, pace)
            self.sleep(pace)

    def _wait(self, property_id: str, kind: str, seconds: float, reason: str) -> None:
        if seconds > self.policy.max_wait:
            raise ApiError(ErrorKind.THROTTLED, f"{reason}; not sending more requests before the reset (in "
                           f"{seconds / 3600:.1f} h)", source="ga4", scope=f"properties/{property_id}",
                           code="RESOURCE_EXHAUSTED", subcode=kind, retry_after=seconds, exhausted=True)
        self.waits.append((kind, seconds))
        self.log.warning("ga4 properties/%s: %s; waiting %.0fs for the reset", property_id, reason, seconds)
        self.sleep(seconds)
        self.readings.pop(property_id, None)  # unknown again until the next response


class Ga4Client(ApiClient):
    source = "ga4"

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        auth: Ga4Auth,
        now: Callable[[], datetime] = clock.now,
        quota: QuotaPolicy | None = None,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        quota = quota or QuotaPolicy()
        # the time budget admits one wait for the hourly reset; transient errors stay bounded by attempts
        retry = retry or RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=60.0, max_total_seconds=quota.max_wait)
        super().__init__(base_url, retry=retry, **kwargs)
        self.auth = auth
        self.now = now
        self.quota_policy = quota
        self.governor = QuotaGovernor(quota, now, self.sleep, self.log)

    # ---- hooks -------------------------------------------------------------------------------

    def prepare(self, spec: RequestSpec) -> RequestSpec:
        match = _PROPERTY.search(spec.url)
        if match:
            self.governor.before_request(match.group(1))
        return spec.replace(headers={**(spec.headers or {}), "Authorization": self.auth.authorization()})

    def classify(self, response: requests.Response) -> ApiError | None:
        error = super().classify(response)
        if error is None or response.status_code != 429:
            return error
        kind = QuotaKind.of(error.message)
        now = self.now()
        match = _PROPERTY.search(response.url or "")
        if match:  # the retry loop now waits as the kind says; the last reading must not add a second wait
            self.governor.readings.pop(match.group(1), None)
        if kind is QuotaKind.CONCURRENT:
            wait, note = self.quota_policy.concurrent_wait, ""
        elif kind is QuotaKind.HOURLY:
            wait, note = seconds_to_next_hour(now) + 1, " (resets at the top of the hour)"
        elif kind is QuotaKind.DAILY:
            wait = seconds_to_pacific_midnight(now) + 1
            note = f" (resets at midnight Pacific, in {wait / 3600:.1f} h)"
        else:
            wait, note = None, ""
        return ApiError(ErrorKind.THROTTLED, error.message + note, status=429, code="RESOURCE_EXHAUSTED",
                        subcode=kind.value if kind else None, retry_after=wait)

    def token_rejected(self, spec: RequestSpec) -> bool:
        self.auth.invalidate()  # the token was rejected (expired early, revoked): one more try with a new one
        return True

    def auth_refused(self, spec: RequestSpec, error: ApiError) -> None:
        if error.status == 401:  # a 401 even after a fresh token (token endpoint errors have other statuses)
            error.message = self.auth.refused(error).message

    # ---- reports -----------------------------------------------------------------------------

    def run_report(self, property_id: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every page of one runReport, lazily (limit/offset until rowCount), quota observed per page."""
        if int(body.get("limit") or 0) > MAX_PAGE_SIZE:
            raise ValueError(f"GA4 returns at most {MAX_PAGE_SIZE} rows per request; use a smaller limit")
        first = RequestSpec("POST", f"v1beta/properties/{property_id}:runReport", json=body)
        for page in self.paginate(first, OffsetPaging(), scope=f"properties/{property_id}"):
            self.governor.observe(property_id, page.get("propertyQuota"))
            yield page
