"""The checks-only job turns a feed red when its API stops answering, without materializing anything."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
from test_meta_assets import ADS_INSIGHTS, HIERARCHY, Meta, meta  # noqa: F401 - the fixture

from adpipeline.config import get_config
from adpipeline.monitoring.cadence import lateness as cadence_lateness
from adpipeline.monitoring.thresholds import HOURLY_FEED_LATENESS
from adpipeline.monitoring.definitions import build_defs as monitoring_defs


def checks_job_result(meta: Meta) -> dg.ExecuteInProcessResult:
    merged = dg.Definitions(assets=list(meta.defs.assets), asset_checks=list(meta.defs.asset_checks),
                            resources=meta.resources)
    monitoring = monitoring_defs(merged, get_config())
    job = dg.Definitions.merge(merged, monitoring).resolve_job_def("monitoring_checks_job")
    return job.execute_in_process(raise_on_error=False)


def lateness(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.asset_key == ADS_INSIGHTS and e.check_name == "lateness")


def first_time_late(last_success: datetime) -> datetime:
    """A moment when a feed last loaded at `last_success` is past ERROR (whatever the hour of the run)."""
    config = get_config()
    for hours in range(5, 30):
        moment = last_success + timedelta(hours=hours)
        late = cadence_lateness(last_success, moment, config.cadences.meta_hourly, config.reporting_timezone)
        if late > HOURLY_FEED_LATENESS.error:
            return moment
    raise AssertionError("no late moment found")


def test_a_stopped_feed_turns_red_through_the_checks_job_alone(meta):
    # the sandbox's (frozen) clock is the pipeline's: sync-log times and "now" share it, whatever today is
    today = meta.sandbox.admin.now().astimezone(timezone(timedelta(hours=-5))).date().isoformat()  # Jamaica
    loaded = meta.run(*HIERARCHY, ADS_INSIGHTS, days=(today, today), checks=False)
    assert loaded.success
    assert lateness(checks_job_result(meta)).passed
    (last_success,) = meta.rows("SELECT max(finished_at) FROM ops.etl_sync_log WHERE source = 'meta'"
                                " AND entity = 'ads_insights' AND status = 'success'")[0]

    # The API stops answering and nothing loads while active hours pass.
    meta.sandbox.admin.add_faults([{"path": "/meta/*", "status": 503, "count": None}])
    meta.sandbox.admin.set_clock(first_time_late(last_success))
    meta.sandbox.admin.reset_requests()
    result = checks_job_result(meta)
    evaluation = lateness(result)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert result.get_asset_materialization_events() == []
    assert meta.sandbox.admin.count() == 0  # the checks read the sync log, never the API
