"""Daily partitions of the insights, in the reporting time zone, and the windows runs pull.

A partition is a calendar date. Each ad account reports its own calendar days (in ITS time zone), so
partition D pulls each account's day D, and never a day that has not started yet in that account's
zone (Meta rejects a `time_range` ending in the account's future).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from adpipeline.config import MetaAccount, SourcesConfig

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def daily_partitions(config: SourcesConfig) -> dg.DailyPartitionsDefinition:
    # The first partition is meta.history_start in adpipeline.yaml (Meta keeps insights for 37 months);
    # end_offset=1: today's partition exists (hourly runs pull the running day)
    return dg.DailyPartitionsDefinition(start_date=config.meta.history_start.isoformat(),
                                        timezone=config.reporting_timezone, end_offset=1)


def account_today(account: MetaAccount, now: datetime) -> date:
    return now.astimezone(ZoneInfo(account.timezone)).date()


def hourly_range(now: datetime, reporting_timezone: str) -> dg.PartitionKeyRange:
    """What an hourly run pulls: yesterday and today (reporting zone)."""
    today = now.astimezone(ZoneInfo(reporting_timezone)).date()
    return dg.PartitionKeyRange((today - timedelta(days=1)).isoformat(), today.isoformat())


def restatement_range(now: datetime, reporting_timezone: str, days: int) -> dg.PartitionKeyRange:
    """What the daily restatement run re-pulls: the `days` complete days before today."""
    today = now.astimezone(ZoneInfo(reporting_timezone)).date()
    return dg.PartitionKeyRange((today - timedelta(days=days)).isoformat(), (today - timedelta(days=1)).isoformat())


def range_tags(keys: dg.PartitionKeyRange) -> dict[str, str]:
    """Tags that make one run cover a partition range (a single-run backfill)."""
    return {RANGE_START_TAG: keys.start, RANGE_END_TAG: keys.end}
