"""Upstream data changing between the attempts (issue 22, scenario 9): Meta restates yesterday (late-attributed
conversions arrive as the hours pass) after a first run that failed one account. The rerun loads what Meta says
now for every scope — the restated numbers, not the first pull's — and nothing is doubled."""

from __future__ import annotations

from fault_harness import assert_meta_truth, assert_no_duplicate_keys, failed_scopes, sync_story
from test_faults_http import DAYS, SMALL_PAGES, denver_pages, leaks
from test_meta_assets import DENVER, JAMAICA, expected_rows, table_rows

from adpipeline.sources.meta.assets import ADS_INSIGHTS


def test_a_restatement_between_the_attempts_is_what_the_rerun_loads(pipeline, dagster_env, warehouse_url,
                                                                       server_log):
    sandbox = pipeline.sandbox
    assert pipeline.scheduled("meta_hierarchy_hourly").success
    sandbox.admin.add_faults(denver_pages({"status": 503, "count": None}))
    first = pipeline.scheduled("meta_insights_hourly", run_config=SMALL_PAGES)
    assert sorted(failed_scopes(first, ADS_INSIGHTS)) == [f"{DENVER} {d}" for d in DAYS]
    first_pull = table_rows(pipeline.meta, *DAYS)

    sandbox.admin.clear_faults()
    sandbox.admin.advance(2 * 3600)  # two hours on (still the same two days in every account's time zone)
    truth_now = expected_rows(pipeline.meta, *DAYS)
    changed = [k for k in first_pull if k[1] == DAYS[0] and truth_now[k] != first_pull[k]]  # yesterday, restated
    assert any(k[0] == JAMAICA for k in changed), "Meta restated none of yesterday's rows: the scenario is void"

    rerun = pipeline.scheduled("meta_insights_hourly", run_config=SMALL_PAGES)
    assert rerun.success and sync_story(warehouse_url, "meta", "ads_insights", rerun.run_id) == {"success": 6}
    assert assert_meta_truth(pipeline, *DAYS) > 0  # every scope as Meta says now, the restated ones included
    stored = table_rows(pipeline.meta, *DAYS)
    assert all(stored[k] == truth_now[k] != first_pull[k] for k in changed)
    assert_no_duplicate_keys(warehouse_url)
    assert not pipeline.open_alerts()
    leaks(pipeline, dagster_env, server_log)
