"""A run worker killed with SIGKILL mid-step (issue 22, scenario 7): the insights run, in its own process on the
instance, is killed while it holds Denver's first day open. Its sync-log row is left `running` with nobody
holding its lock; the next scheduled run resolves it (`failed`, abandoned) and converges."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import dagster as dg
from fault_harness import PROJECT, assert_meta_truth, assert_no_duplicate_keys, sync_story
from test_faults_http import DAYS, SMALL_PAGES, leaks
from test_meta_assets import DENVER

WORKER = """
import json, sys
import dagster as dg
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
