"""Two runs of the same hour at once (issue 22, scenario 8): the run queue lets two Meta runs run together, so
the second insights run can reach a scope the first is still loading. The scope's sync lock refuses it there
(never two loads of one scope and window); whatever the interleaving, no row is doubled or lost, and the next
run converges."""

from __future__ import annotations

import threading
import time

from fault_harness import assert_meta_truth, assert_no_duplicate_keys, failed_scopes, scope_metadata, sync_story
from test_faults_http import DAYS, SMALL_PAGES, leaks
from test_meta_assets import DENVER

from adpipeline.sources.meta.assets import ADS_INSIGHTS

REFUSED = "another sync of this scope and window is running; not starting a second"


def scope_errors(result) -> dict[str, str]:
    return dict(scope_metadata(result, ADS_INSIGHTS, "errors", {}))


def test_a_second_run_of_the_same_hour_is_refused_on_the_scope_the_first_is_loading_and_nothing_doubles(
        pipeline, dagster_env, warehouse_url, server_log):
    sandbox = pipeline.sandbox
    assert pipeline.scheduled("meta_hierarchy_hourly").success
    # the first run holds Denver's first day open: its totals pass, its first page of ads answers 8 s late
    path = f"/meta/v24.0/{DENVER}/insights"
    _, slow = sandbox.admin.add_faults([{"path": path, "count": 1}, {"path": path, "delay": 8}])
    job, request = pipeline.run_request("meta_insights_hourly")
    results = {}
    first = threading.Thread(target=lambda: results.update(first=pipeline.execute(
        job, tags=request.tags, run_config=SMALL_PAGES)))
    first.start()
    while first.is_alive() and slow in {f["id"] for f in sandbox.admin.faults()}:  # consumed when it starts
        time.sleep(0.05)  # until the first run is inside Denver's first day (its sync lock held)
    second = pipeline.execute(job, tags=request.tags, run_config=SMALL_PAGES)
    first.join()
    runs = [results["first"], second]
    for result in runs:
        pipeline.notify(result)

    refused = {scope: error for result in runs for scope, error in scope_errors(result).items()}
    assert f"{DENVER} {DAYS[0]}" in refused and all(REFUSED in e for e in refused.values()), refused
    assert set(failed_scopes(second, ADS_INSIGHTS)) >= {f"{DENVER} {DAYS[0]}"}
    for result in runs:
        sync_story(warehouse_url, "meta", "ads_insights", result.run_id)  # nothing left running
    assert_no_duplicate_keys(warehouse_url)

    rerun = pipeline.scheduled("meta_insights_hourly", run_config=SMALL_PAGES)
    assert rerun.success and sync_story(warehouse_url, "meta", "ads_insights", rerun.run_id) == {"success": 6}
    assert assert_meta_truth(pipeline, *DAYS) > 0
    assert_no_duplicate_keys(warehouse_url)
    leaks(pipeline, dagster_env, server_log)
