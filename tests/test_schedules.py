"""Schedules: local time, cadences from the config, running by default, one run per scope."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
import pytest

from adpipeline.config import get_config


@pytest.fixture(scope="module")
def defs():
    from adpipeline.definitions import defs as loaded

    return loaded


def evaluate(defs, name: str, tick: datetime) -> list[dg.RunRequest]:
    schedule = defs.resolve_schedule_def(name)
    with dg.build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def()) as context:
        return list(schedule.evaluate_tick(context).run_requests)


def test_every_schedule_runs_by_default_in_the_reporting_time_zone(defs):
    config = get_config()
    for schedule in defs.schedules:
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING, schedule.name
        assert schedule.execution_timezone == config.reporting_timezone, schedule.name


@pytest.mark.parametrize("name, cadence", [("breezeway_reservations", "breezeway_reservations"),
                                           ("breezeway_daily", "breezeway_daily")])
def test_breezeway_schedules_request_one_run_per_region(defs, name, cadence):
    config = get_config()
    assert defs.resolve_schedule_def(name).cron_schedule == getattr(config.cadences, cadence)
    requests = evaluate(defs, name, datetime(2026, 11, 23, 15, tzinfo=timezone.utc))
    assert sorted(r.partition_key for r in requests) == sorted(r.code for r in config.breezeway.regions)


def test_meta_hourly_pulls_the_hierarchy_and_yesterday_and_today_in_one_run(defs):
    tick = datetime(2026, 11, 23, 15, tzinfo=timezone.utc)  # 10:00 in Jamaica
    assert len(evaluate(defs, "meta_hierarchy_hourly", tick)) == 1
    (request,) = evaluate(defs, "meta_insights_hourly", tick)
    assert (request.tags["dagster/asset_partition_range_start"], request.tags["dagster/asset_partition_range_end"]) == \
        ("2026-11-22", "2026-11-23")
    for name in ("meta_hierarchy_hourly", "meta_insights_hourly"):
        assert defs.resolve_schedule_def(name).cron_schedule == "0 6-22 * * *"


def test_meta_restatement_is_one_run_over_the_attribution_window(defs):
    schedule = defs.resolve_schedule_def("meta_restatement")
    assert schedule.cron_schedule == "15 2 * * *"
    (request,) = evaluate(defs, "meta_restatement", datetime(2026, 11, 23, 7, 15, tzinfo=timezone.utc))  # 02:15
    assert request.tags["dagster/asset_partition_range_start"] == "2026-10-26"  # 28 days before the 23rd
    assert request.tags["dagster/asset_partition_range_end"] == "2026-11-22"
