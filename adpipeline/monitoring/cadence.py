"""Lateness measured against a cadence, not plain wall-clock age.

Lateness is the age of the last success, except that a cadence's quiet hours do not count: the clock
starts no earlier than one regular interval before the first tick that was due after that success.
So for hourly 06:00-22:00 a success at 22:00 is not late at 03:00 (nothing was due) nor at 06:30 (the
06:00 run may still be running: 1.5 h), while a success at 06:00 is 5 h late at 11:00. For cadences
without quiet hours this is exactly the age of the last success, which is what the runbooks'
thresholds (hourly WARN > 2 h / ERROR > 4 h, daily ERROR > 25 h) were written against.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import islice

from dagster._utils.schedules import cron_string_iterator

from adpipeline.config import SourcesConfig


def next_tick_after(moment: datetime, cron: str, timezone: str) -> datetime:
    """The first tick of `cron` (in `timezone`) strictly after `moment`."""
    for tick in cron_string_iterator(moment.timestamp(), cron, timezone):
        if tick.timestamp() > moment.timestamp():
            return tick
    raise ValueError(f"cron {cron!r} has no tick after {moment}")  # pragma: no cover - crons are infinite


@lru_cache(maxsize=64)
def regular_interval(cron: str, timezone: str) -> timedelta:
    """The shortest spacing between ticks (over a week of ticks): the cadence's normal interval."""
    start = datetime(2026, 1, 5).timestamp()  # any fixed Monday: keeps this deterministic
    ticks = list(islice(cron_string_iterator(start, cron, timezone), 400))
    return min(b - a for a, b in zip(ticks, ticks[1:]))


def lateness(last_success: datetime | None, now: datetime, cron: str, timezone: str) -> timedelta | None:
    """How late the feed is now (zero when nothing was due yet); None when it never succeeded."""
    if last_success is None:
        return None
    due = next_tick_after(last_success, cron, timezone)
    if due > now:
        return timedelta(0)
    started = max(last_success, due - regular_interval(cron, timezone))
    return now - started


def feed_cron(asset_key: Sequence[str], config: SourcesConfig) -> str | None:
    """The cron of the schedule that loads an extraction asset (`meta/...`, `breezeway/...`, `ga4/...`), else None."""
    source, name = asset_key[0], asset_key[-1]
    cadences = config.cadences
    if source == "breezeway":
        return cadences.breezeway_reservations if name == "reservations" else cadences.breezeway_daily
    return {"meta": cadences.meta_hourly, "ga4": cadences.ga4}.get(source)
