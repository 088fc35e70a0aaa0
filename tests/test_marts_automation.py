"""dbt models follow their sources: the same partitions, right after the extraction run ends (succeeded, or
failed with some scopes committed)."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.storage.dagster_run import DagsterRun


@pytest.fixture(scope="module")
def defs():
    from adpipeline.definitions import defs as loaded

    return loaded


def requests_after(defs, job_name: str, assets: list[list[str]], tags: dict[str, str]) -> list[dg.RunRequest]:
    sensor = defs.resolve_sensor_def("marts_after_sources")
    run = DagsterRun(job_name=job_name, run_id="0123456789abcdef", tags=tags,
                     asset_selection=frozenset(dg.AssetKey(a) for a in assets))
    event = DagsterEvent(DagsterEventType.RUN_SUCCESS.value, job_name=job_name)
    with dg.instance_for_test() as instance:
        context = dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_instance=instance,
                                                     dagster_run=run, dagster_event=event)
        result = sensor(context)  # a run-status sensor is invoked with its run's context
    return [] if isinstance(result, dg.SkipReason) else list(result)


def test_a_meta_restatement_range_rebuilds_the_same_range_of_meta_models(defs):
    tags = {"dagster/asset_partition_range_start": "2026-10-26", "dagster/asset_partition_range_end": "2026-11-22"}
    requests = requests_after(defs, "meta_insights_job", [["meta", "ads_insights"], ["meta", "account_insights"]], tags)
    meta = [r for r in requests if r.job_name == "dbt_meta_daily_job"]
    assert len(meta) == 1 and meta[0].tags["dagster/asset_partition_range_start"] == "2026-10-26"
    assert meta[0].tags["dagster/asset_partition_range_end"] == "2026-11-22"


def test_a_ga4_day_rebuilds_that_day(defs):
    tags = {"dagster/partition/date": "2026-11-21", "dagster/partition/property": "310000001"}
    requests = requests_after(defs, "ga4_reports_job", [["ga4", "traffic_acquisition"]], tags)
    assert [(r.job_name, r.partition_key) for r in requests] == [("dbt_ga4_daily_job", "2026-11-21")]


def test_unrelated_runs_request_nothing(defs):
    assert requests_after(defs, "purge_ops_history_job", [], {}) == []


def test_a_failed_run_rebuilds_what_its_healthy_scopes_materialized(defs):
    """The per-scope runner fails a step when any scope failed but records the healthy scopes'
    materializations: the dbt models on exactly those partitions are still rebuilt."""
    sensor = defs.resolve_sensor_def("marts_after_partial_sources")

    def partly_failed(key: list[str], partitions: list[str]) -> dg.AssetsDefinition:
        @dg.asset(key=key)
        def source(context):
            for partition in partitions:  # what warehouse/scopes.py logs before failing the step
                context.log_event(dg.AssetMaterialization(asset_key=dg.AssetKey(key), partition=partition))
            raise dg.Failure("ga4/traffic_acquisition: 1 of 3 scope(s) failed")
        return source

    def requests(asset: dg.AssetsDefinition) -> list[dg.RunRequest]:
        with dg.instance_for_test() as instance:
            result = dg.materialize([asset], instance=instance, raise_on_error=False)
            assert not result.success
            run = instance.get_run_by_id(result.run_id)
            event = DagsterEvent(DagsterEventType.RUN_FAILURE.value, job_name=run.job_name)
            context = dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_instance=instance,
                                                         dagster_run=run, dagster_event=event)
            result = sensor(context)
        return [] if isinstance(result, dg.SkipReason) else list(result)

    ga4 = requests(partly_failed(["ga4", "traffic_acquisition"], ["2026-11-21|310000001", "2026-11-22|310000001"]))
    assert [(r.job_name, r.partition_key) for r in ga4] == [("dbt_ga4_daily_job", "2026-11-21"),
                                                            ("dbt_ga4_daily_job", "2026-11-22")]
    meta = requests(partly_failed(["meta", "ads_insights"], ["2026-11-20", "2026-11-18"]))
    assert [(r.job_name, r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
            for r in meta] == [("dbt_meta_daily_job", "2026-11-18", "2026-11-20")]
    breezeway = requests(partly_failed(["breezeway", "tasks"], ["smoky"]))
    assert [r.job_name for r in breezeway] == ["dbt_models_job"]
    assert requests(partly_failed(["breezeway", "tasks"], [])) == []  # nothing committed: nothing to rebuild
