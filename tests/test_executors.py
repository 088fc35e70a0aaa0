"""Each job runs on the executor chosen for it (adpipeline/conventions.py), the parallel one really forks
its step processes from a server that imported the code location once (issue 15), and a run that is no job of
ours forks only when its plan has independent heavy steps (issue 23)."""

from __future__ import annotations

import os
import sys

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableJob

from adpipeline.conventions import LIGHT_EXECUTOR, PARALLEL_EXECUTOR, PER_RUN_EXECUTOR

LIGHT, PER_RUN = LIGHT_EXECUTOR.name, PER_RUN_EXECUTOR.name
# A new job must be added here: choosing its executor is a decision, not a default.
EXPECTED = {
    "monitoring_checks_job": LIGHT,  # ~35 checks of ~0.2 s: a process each cost minutes
    "meta_token_job": LIGHT,
    "meta_hierarchy_job": LIGHT,  # a chain: accounts -> campaigns -> ad sets -> ads
    "breezeway_reservations_job": LIGHT,  # one step
    "ga4_reports_job": LIGHT,  # one (day, property): a few small reports
    "dbt_meta_daily_job": LIGHT,  # one dbt invocation each
    "dbt_ga4_daily_job": LIGHT,
    "dbt_models_job": LIGHT,
    "purge_ops_history_job": LIGHT,
    "meta_insights_job": LIGHT,  # measured: forked steps cost more than they saved (benchmarks/operations.py)
    # five entities of a region, but one heavy (tasks) and 17 sub-second check steps: forked, each step cost
    # ~1.5-2 s, 42.5 s of wall for 16.5 s of steps (benchmarks/operations.py)
    "breezeway_daily_job": LIGHT,
    # what the UI and `dagster asset materialize` launch: one Meta insights step and its 9 checks cost ~16 s of
    # forks; a selection of several independent loads still runs them in parallel
    "__ASSET_JOB": PER_RUN,
}


@pytest.fixture(scope="module")
def jobs() -> dict[str, dg.JobDefinition]:
    from adpipeline.definitions import defs

    return {job.name: job for job in defs.resolve_all_job_defs()}


def test_every_job_runs_on_the_executor_chosen_for_it(jobs):
    assert {name: job.executor_def.name for name, job in jobs.items()} == EXPECTED


def test_dbt_jobs_have_one_step_so_one_dbt_invocation_per_run(jobs):
    for name in ("dbt_meta_daily_job", "dbt_ga4_daily_job", "dbt_models_job"):
        assert len(jobs[name].nodes) == 1, name


def _where_am_i() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"pid": os.getpid(), "preloaded": "adpipeline.definitions" in sys.modules})


@dg.asset
def first_step() -> dg.MaterializeResult:
    return _where_am_i()


@dg.asset
def second_step() -> dg.MaterializeResult:
    return _where_am_i()


def parallel_job() -> dg.JobDefinition:
    return dg.Definitions(
        assets=[first_step, second_step],
        jobs=[dg.define_asset_job("parallel_probe", executor_def=PARALLEL_EXECUTOR)],
    ).resolve_job_def("parallel_probe")


def test_parallel_steps_run_in_forked_processes_that_already_hold_the_definitions():
    # This module never imports adpipeline.definitions at module level: if a step finds it loaded, the
    # forkserver preloaded it, so the step did not import the code location itself.
    with dg.instance_for_test() as instance:
        # by file: pytest imports this module under a name the step processes could not import
        with dg.execute_job(ReconstructableJob.for_file(__file__, "parallel_job"), instance=instance) as result:
            assert result.success
            values = [{k: v.value for k, v in e.materialization.metadata.items()}
                      for e in result.get_asset_materialization_events()]
    assert len(values) == 2
    assert all(v["preloaded"] for v in values), values
    assert len({v["pid"] for v in values} | {os.getpid()}) == 3  # a process per step, not this one


# Two heavy assets that can run at the same time, one that waits for the first, and a check: the probes the
# Definitions' default executor chooses between.
@dg.asset
def independent_step() -> dg.MaterializeResult:
    return _where_am_i()


@dg.asset(deps=[first_step])
def downstream_step() -> dg.MaterializeResult:
    return _where_am_i()


@dg.asset_check(asset=first_step)
def first_step_check() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True, metadata={"pid": os.getpid()})


def per_run_job() -> dg.JobDefinition:
    # a job of all the assets, on the Definitions' default executor (the implicit job's name is reserved)
    return dg.Definitions(
        assets=[first_step, independent_step, downstream_step], asset_checks=[first_step_check],
        jobs=[dg.define_asset_job("per_run_probe", executor_def=PER_RUN_EXECUTOR)],
    ).resolve_job_def("per_run_probe")


def _step_pids(selection: set[str]) -> set[int]:
    """The pids the selected steps (assets and their checks) ran in, run as the UI runs an ad-hoc selection."""
    with dg.instance_for_test() as instance:
        job = ReconstructableJob.for_file(__file__, "per_run_job")
        keys = [dg.AssetKey(name) for name in selection]
        with dg.execute_job(job, instance=instance, asset_selection=keys) as result:
            assert result.success
            pids = {e.materialization.metadata["pid"].value for e in result.get_asset_materialization_events()}
            pids |= {e.metadata["pid"].value
                     for e in result.get_asset_check_evaluations()}
    return pids


def test_a_selection_of_one_heavy_asset_and_its_check_runs_in_one_process():
    assert _step_pids({"first_step"}) == {os.getpid()}  # both steps in the run's own process: no fork each


def test_a_chain_of_heavy_assets_runs_in_one_process():
    assert _step_pids({"first_step", "downstream_step"}) == {os.getpid()}  # the second waits anyway


def test_independent_heavy_assets_run_in_parallel_processes():
    pids = _step_pids({"first_step", "independent_step"})
    assert len(pids) == 3 and os.getpid() not in pids  # each asset in a forked process, its check in a third
