"""Processes killed mid-load (issue 22). Scenario 7: the insights run's worker, in its own process on the instance,
is killed with SIGKILL while it holds Denver's first day open; its sync-log row is left `running` with nobody
holding its lock; the next scheduled run resolves it (`failed`, abandoned) and converges. Scenario 6: the
Postgres server itself is killed mid-load and restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import dagster as dg
import pytest
from fault_harness import PROJECT, assert_meta_truth, assert_no_duplicate_keys, failed_scopes, sync_story
from test_faults_http import DAYS, SMALL_PAGES, leaks
from test_meta_assets import DENVER

from adpipeline.sources.meta.assets import ADS_INSIGHTS

WORKER = """
import json, sys
import dagster as dg
import pytest
from adpipeline.definitions import defs
with dg.DagsterInstance.get() as instance:
    defs.resolve_job_def(sys.argv[1]).execute_in_process(instance=instance, tags=json.loads(sys.argv[2]),
                                                         run_config=json.loads(sys.argv[3]), raise_on_error=False)
"""


def test_a_run_worker_killed_mid_step_leaves_nothing_running_after_the_next_run_which_converges(
        pipeline, dagster_env, warehouse_url, server_log):
    sandbox = pipeline.sandbox
    assert pipeline.scheduled("meta_hierarchy_hourly").success
    path = f"/meta/v24.0/{DENVER}/insights"
    _, slow = sandbox.admin.add_faults([{"path": path, "count": 1}, {"path": path, "delay": 60}])
    job, request = pipeline.run_request("meta_insights_hourly")
    worker = subprocess.Popen([sys.executable, "-c", WORKER, job, json.dumps(request.tags), json.dumps(SMALL_PAGES)],
                              cwd=PROJECT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while worker.poll() is None and slow in {f["id"] for f in sandbox.admin.faults()}:
            time.sleep(0.1)  # until the worker is inside Denver's first day (its sync open)
        assert worker.poll() is None, "the worker ended before the fault"
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    (killed,) = pipeline.instance.get_runs(dg.RunsFilter(job_name=job), limit=1)
    assert killed.status == dg.DagsterRunStatus.STARTED  # nobody told Dagster: the worker died mid-step
    left = pipeline.rows("SELECT id FROM ops.etl_sync_log WHERE dagster_run_id = %s AND status = 'running'",
                         killed.run_id)
    assert len(left) == 1  # Denver's first day

    sandbox.admin.clear_faults()
    rerun = pipeline.scheduled("meta_insights_hourly", run_config=SMALL_PAGES)
    assert rerun.success and sync_story(warehouse_url, "meta", "ads_insights", rerun.run_id) == {"success": 6}
    (status, error), = pipeline.rows("SELECT status, error FROM ops.etl_sync_log WHERE id = %s", left[0][0])
    assert status == "failed" and error.startswith("abandoned"), error
    assert assert_meta_truth(pipeline, *DAYS) > 0
    assert_no_duplicate_keys(warehouse_url)
    leaks(pipeline, dagster_env, server_log)


def test_postgres_killed_mid_load_restarts_and_the_rerun_converges_with_the_instance_intact(
        pipeline, dagster_env, warehouse_url, warehouse_home, server_log):
    """Scenario 6: the postmaster is killed (SIGKILL) while a run holds a scope's transaction open; the embedded
    server restarts on the same DSN; the rerun converges and the instance database (same server) still works."""
    if os.environ.get("ADPIPELINE_TEST_WAREHOUSE_URL"):
        pytest.skip("kills the embedded server")
    from adpipeline.warehouse.embedded import EmbeddedServer
    from test_embedded_warehouse import postmasters

    sandbox = pipeline.sandbox
    assert pipeline.scheduled("meta_hierarchy_hourly").success
    path = f"/meta/v24.0/{DENVER}/insights"
    _, slow = sandbox.admin.add_faults([{"path": path, "count": 1}, {"path": path, "delay": 8}])
    job, request = pipeline.run_request("meta_insights_hourly")
    outcome: dict = {}
    loading = ("SELECT count(*) FROM ops.etl_sync_log WHERE scope = %s AND entity = 'ads_insights'"
               " AND status = 'running'")

    def first_run() -> None:
        try:
            outcome["result"] = pipeline.execute(job, tags=request.tags, run_config=SMALL_PAGES)
        except Exception as error:  # the instance's own writes may fail while the server is down
            outcome["error"] = error

    thread = threading.Thread(target=first_run)
    thread.start()
    while thread.is_alive() and (slow in {f["id"] for f in sandbox.admin.faults()}
                                 or pipeline.rows(loading, DENVER) == [(0,)]):
        time.sleep(0.05)  # until Denver's first day is mid-load: its page delayed, its sync (transaction) open
    server = EmbeddedServer(warehouse_home)
    (postmaster,) = postmasters(server.pgdata)
    postmaster.send_signal(signal.SIGKILL)
    postmaster.wait(10)
    assert server.ensure_started() == warehouse_url  # the embedded server restarts on the same DSN
    thread.join()
    # the kill cut the run short: the instance's writes failed, or at least Denver's scope did
    assert "error" in outcome or f"{DENVER} {DAYS[0]}" in failed_scopes(outcome["result"], ADS_INSIGHTS)

    sandbox.admin.clear_faults()
    rerun = pipeline.scheduled("meta_insights_hourly", run_config=SMALL_PAGES)
    assert rerun.success and sync_story(warehouse_url, "meta", "ads_insights", rerun.run_id) == {"success": 6}
    assert assert_meta_truth(pipeline, *DAYS) > 0
    assert_no_duplicate_keys(warehouse_url)
    assert pipeline.instance.get_run_by_id(rerun.run_id).status == dg.DagsterRunStatus.SUCCESS  # instance DB fine
    leaks(pipeline, dagster_env, server_log)
