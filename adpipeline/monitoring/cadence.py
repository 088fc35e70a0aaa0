"""Lateness measured against a cadence, not wall-clock age.

A feed is late from the first scheduled tick after its last success: a feed scheduled 06:00-22:00
that succeeded at 22:00 is not late at 03:00 (the next tick is 06:00), but one that last succeeded
at 06:00 is 4 hours late at 11:00 (the 07:00 tick should have produced a success).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from dagster._utils.schedules import cron_string_iterator


def next_tick_after(moment: datetime, cron: str, timezone: str) -> datetime:
    """The first tick of `cron` (in `timezone`) strictly after `moment`."""
    for tick in cron_string_iterator(moment.timestamp(), cron, timezone):
        if tick.timestamp() > moment.timestamp():
            return tick
    raise ValueError(f"cron {cron!r} has no tick after {moment}")  # pragma: no cover - crons are infinite


def lateness(last_success: datetime | None, now: datetime, cron: str, timezone: str) -> timedelta | None:
    """How late the feed is now (zero when on time); None when it never succeeded."""
    if last_success is None:
        return None
    due = next_tick_after(last_success, cron, timezone)
    return max(now - due, timedelta(0))
