"""Processes killed mid-load (issue 22). Scenario 7: the insights run's worker (Dagster's run worker, in its own
process) is killed with SIGKILL while it holds Denver's first window open; its sync-log rows are left `running` with
nobody holding their locks; run monitoring's next poll fails the run (LocalRunLauncher's health check: the worker's
process is gone), the run-failure alert fires, and the next scheduled run resolves the rows (`failed`, abandoned)
and converges. Scenario 6: the Postgres server itself is killed in the middle of a large COPY and restarts."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.launcher import WorkerStatus
from dagster._daemon.monitoring.run_monitoring import monitor_started_run
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import serialize_value
from fault_harness import (
    PROJECT,
    assert_meta_truth,
    assert_no_duplicate_keys,
    failed_scopes,
    failure_messages,
    sync_story,
)
from test_faults_http import DAYS, SMALL_PAGES, leaks
from test_meta_assets import DENVER

from adpipeline.monitoring.launcher import HOST_TAG, LocalRunLauncher
from adpipeline.sources.meta.assets import ADS_INSIGHTS

def launch_worker(pipeline, job: str, tags: dict[str, str], run_config: dict) -> tuple[str, subprocess.Popen]:
    """A run of `job` on the instance, executed by Dagster's own run worker (`dagster api execute_run`, what the
    code server starts for a launched run) in a process of its own on the host's real clock, tagged with this host
    as LocalRunLauncher tags a run whose code server is local."""
    recon = ReconstructableRepository.for_module("adpipeline.definitions", "defs", working_directory=str(PROJECT)
                                                 ).get_reconstructable_job(job)
    run = pipeline.instance.create_run_for_job(job_def=recon.get_definition(), job_code_origin=recon.get_python_origin(),
                                               run_config=run_config, tags={**tags, HOST_TAG: socket.gethostname()})
    args = serialize_value(ExecuteRunArgs(job_origin=recon.get_python_origin(), run_id=run.run_id,
                                          instance_ref=pipeline.instance.get_ref()))
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("FAKETIME")}
    worker = subprocess.Popen([sys.executable, "-m", "dagster", "api", "execute_run", args], cwd=PROJECT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return run.run_id, worker


def test_a_run_worker_killed_mid_step_is_failed_by_run_monitoring_and_the_next_run_converges(
        pipeline, dagster_env, warehouse_url, server_log):
    sandbox = pipeline.sandbox
    instance = pipeline.instance
    assert isinstance(instance.run_launcher, LocalRunLauncher)  # what dagster.yaml configures
    assert pipeline.scheduled("meta_hierarchy_hourly").success
    path = f"/meta/v24.0/{DENVER}/insights"
    _, slow = sandbox.admin.add_faults([{"path": path, "count": 1}, {"path": path, "delay": 60}])
    job, request = pipeline.run_request("meta_insights_hourly")
    run_id, worker = launch_worker(pipeline, job, request.tags, SMALL_PAGES)
    try:
        while worker.poll() is None and slow in {f["id"] for f in sandbox.admin.faults()}:
            time.sleep(0.1)  # until the worker is inside Denver's first day (its sync open)
        assert worker.poll() is None, "the worker ended before the fault"
        alive = instance.run_launcher.check_run_worker_health(instance.get_run_by_id(run_id))
        assert alive.status == WorkerStatus.RUNNING and alive.run_worker_id == str(worker.pid), alive
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED  # nobody told Dagster
    left = pipeline.rows("SELECT id, scope, window_start::text FROM ops.etl_sync_log WHERE dagster_run_id = %s"
                         " AND status = 'running'", run_id)
    # Denver's window (both days, one transaction) was open; the other accounts' windows, in parallel, may be too
    assert {(scope, day) for _, scope, day in left} >= {(DENVER, day) for day in DAYS}, left

    # the run-monitoring daemon's next poll: the launcher says the worker is gone, the daemon fails the run
    monitor_started_run(instance, None, instance.get_run_record_by_id(run_id), logging.getLogger("run_monitoring"))
    killed = instance.get_run_by_id(run_id)
    assert killed.status == dg.DagsterRunStatus.FAILURE
    (failure,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert f"run worker process {worker.pid} on {socket.gethostname()} exited" in failure.message
    pipeline.notify_run(run_id)
    severity, alert = pipeline.open_alerts()["run_failure:meta_insights_job"]
    assert severity == "critical" and f"run worker process {worker.pid}" in alert

    sandbox.admin.clear_faults()
    rerun = pipeline.scheduled("meta_insights_hourly", run_config=SMALL_PAGES)
    assert rerun.success and sync_story(warehouse_url, "meta", "ads_insights", rerun.run_id) == {"success": 6}
    for row_id, _, _ in left:  # every row the killed run left running: failed as abandoned by the next run
        (status, error), = pipeline.rows("SELECT status, error FROM ops.etl_sync_log WHERE id = %s", row_id)
        assert status == "failed" and error.startswith("abandoned"), error
    assert assert_meta_truth(pipeline, *DAYS) > 0
    assert_no_duplicate_keys(warehouse_url)
    assert "run_failure:meta_insights_job" not in pipeline.open_alerts()  # resolved by the good run
    leaks(pipeline, dagster_env, server_log)


def test_the_launcher_does_not_judge_a_worker_on_another_host_or_one_not_started(pipeline):
    """Dagster fails a run on any health answer but RUNNING/SUCCESS: what cannot be checked here stays RUNNING."""
    instance = pipeline.instance
    job, request = pipeline.run_request("meta_insights_hourly")
    recon = ReconstructableRepository.for_module("adpipeline.definitions", "defs", working_directory=str(PROJECT)
                                                 ).get_reconstructable_job(job)
    elsewhere = instance.create_run_for_job(job_def=recon.get_definition(), tags={HOST_TAG: "another-host"})
    here = instance.create_run_for_job(job_def=recon.get_definition(), tags={HOST_TAG: socket.gethostname()})
    for run, reason in ((elsewhere, "not checked from here"), (here, "has not reported its pid")):
        health = instance.run_launcher.check_run_worker_health(run)
        assert health.status == WorkerStatus.RUNNING and reason in health.msg, health


BIG_ADS = 20_000  # Denver's ads in this scenario: ~25k ad rows in its two-day window, one COPY
BIG_PAGES = {"resources": {"meta": {"config": {"page_limit": 5000}}}}  # the sandbox's largest page
# How libpq reports the server going away under a client: which one depends on whether the backend saw its
# postmaster die while waiting on the socket (it then sends a FATAL first) or the socket closed under a read
LOST_CONNECTION = ("the connection is lost", "terminating connection due to unexpected postmaster exit",
                   "server closed the connection unexpectedly")


def names_a_lost_connection(text: str) -> bool:
    return any(wording in text for wording in LOST_CONNECTION)


COPYING = ("SELECT a.query, p.tuples_processed FROM pg_stat_progress_copy p JOIN pg_stat_activity a USING (pid)"
           " WHERE p.relid = 'raw_meta.ads_insights'::regclass AND p.command = 'COPY FROM'")


def test_postgres_killed_during_a_large_copy_restarts_and_the_rerun_converges_with_the_instance_intact(
        pipeline, dagster_env, warehouse_url, warehouse_home, server_log):
    """Scenario 6: the postmaster is killed (SIGKILL) while the loader's COPY of one large scope (Denver's window,
    ~25k ad rows) is streaming, seen in pg_stat_progress_copy; the embedded server restarts on the same DSN; the
    rerun converges, the killed attempt's sync-log rows end `failed`, and the instance database (same server)
    still works."""
    if os.environ.get("ADPIPELINE_TEST_WAREHOUSE_URL"):
        pytest.skip("kills the embedded server")
    from adpipeline.warehouse.embedded import EmbeddedServer
    from test_embedded_warehouse import postmasters

    sandbox = pipeline.sandbox
    pipeline.meta.script(account_ads={DENVER: BIG_ADS}, page_quirks=False)  # full pages: 5000 rows each
    assert pipeline.scheduled("meta_hierarchy_hourly").success
    path = f"/meta/v24.0/{DENVER}/insights"
    # Denver's account totals and its first 4 pages of ad rows pass; the 5th is held until the faults are cleared,
    # so the COPY (which streams the pages as they arrive) is still open when the server dies
    _, held = sandbox.admin.add_faults([{"path": path, "count": 5}, {"path": path, "hold": True}])
    job, request = pipeline.run_request("meta_insights_hourly")
    outcome: dict = {}

    def first_run() -> None:
        try:
            outcome["result"] = pipeline.execute(job, tags=request.tags, run_config=BIG_PAGES)
        except Exception as error:  # the instance's own writes may fail while the server is down
            outcome["error"] = error

    thread = threading.Thread(target=first_run)
    thread.start()
    copying: list[tuple] = []
    give_up = time.monotonic() + 300  # only so that a broken product cannot hang the suite on the held page
    # Until the 5th page is held and Denver's COPY has taken in more than 3 pages and stopped growing: the client
    # sends rows in ~32 KB chunks, so the 4th page's last rows may wait in its buffer, unseen by the server.
    settled = 0
    while thread.is_alive() and time.monotonic() < give_up and settled < 10:
        time.sleep(0.05)
        before, copying = copying, pipeline.rows(COPYING)
        ready = held not in {f["id"] for f in sandbox.admin.faults()} and copying and copying[0][1] > 3 * 5000
        settled = settled + 1 if ready and copying == before else 0
    if settled < 10:
        sandbox.admin.clear_faults()
        thread.join()
        pytest.fail(f"Denver's COPY was not seen streaming with 3+ pages in and the 5th held: {copying}, {outcome}")
    server = EmbeddedServer(warehouse_home)
    (postmaster,) = postmasters(server.pgdata)
    postmaster.send_signal(signal.SIGKILL)
    postmaster.wait(10)
    ((statement, tuples),) = copying  # what pg_stat_progress_copy showed just before the kill
    assert thread.is_alive() and statement.startswith('COPY "raw_meta"."ads_insights"') and tuples > 15_000, copying
    assert server.ensure_started() == warehouse_url  # the embedded server restarts on the same DSN
    sandbox.admin.clear_faults()  # the held page goes out; the run finds its connection gone
    thread.join()
    # the kill cut the run short: the instance's writes failed, or at least Denver's scope did
    assert "error" in outcome or f"{DENVER} {DAYS[0]}" in failed_scopes(outcome["result"], ADS_INSIGHTS)
    assert pipeline.rows("SELECT count(*) FROM raw_meta.ads_insights WHERE account_id = %s", DENVER) == [(0,)]
    if "result" in outcome:  # the run could still tell Dagster how it ended: the sensors alert on it
        pipeline.notify(outcome["result"])
        severity, alert = pipeline.open_alerts()["run_failure:meta_insights_job"]
        assert severity == "critical" and DENVER in alert and names_a_lost_connection(alert), alert

    rerun = pipeline.scheduled("meta_insights_hourly", run_config=BIG_PAGES)
    assert rerun.success and sync_story(warehouse_url, "meta", "ads_insights", rerun.run_id) == {"success": 6}
    # the killed attempt's Denver days: failed (by the run itself once the server was back, or as abandoned by
    # the rerun), none left running (sync_story) and none success
    killed = pipeline.rows("SELECT window_start::text, status, error FROM ops.etl_sync_log WHERE source = 'meta'"
                           " AND entity = 'ads_insights' AND scope = %s AND dagster_run_id <> %s", DENVER, rerun.run_id)
    assert sorted((day, status) for day, status, _ in killed) == [(day, "failed") for day in DAYS], killed
    assert all(names_a_lost_connection(error) or error.startswith("abandoned") for _, _, error in killed), killed
    assert assert_meta_truth(pipeline, *DAYS) > 4 * 5000
    assert_no_duplicate_keys(warehouse_url)
    assert pipeline.instance.get_run_by_id(rerun.run_id).status == dg.DagsterRunStatus.SUCCESS  # instance DB fine
    assert "run_failure:meta_insights_job" not in pipeline.open_alerts()  # resolved by the good run
    leaks(pipeline, dagster_env, server_log)
    print(f"\nscenario 6: {tuples} rows copied when the postmaster was killed; killed run"
          f" {'failed: ' + failure_messages(outcome['result'])[0][:160] if 'result' in outcome else outcome['error']!r};"
          f" sync log {killed}")
