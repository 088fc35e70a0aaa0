"""`adpipeline demo`: the whole pipeline once, on the sandbox APIs and the embedded warehouse.

Runs are runs of the code location's own asset job (`__ASSET_JOB`, what the UI's "Materialize" runs), recorded in
the local Dagster instance (Postgres) with its origin, so `adpipeline dev` shows them and can re-execute them.
Assets run level by level in dependency order; within a level, one run per partitions definition and
partition (the latest ended day; every region; every property), a batch's partitions side by side in forked
processes. The standalone non-blocking checks run once at the end, over everything loaded. The console gets
one line per batch and a summary with each step's time; Dagster's events (read back from the instance after
each run) go to a log file beside it.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob

from adpipeline import clock
from adpipeline.http.redact import redact
from adpipeline.stack import local_stack

log = logging.getLogger(__name__)


@dataclass
class AssetSummary:
    runs: int = 0
    failed_runs: int = 0
    partitions: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    checks: dict[str, str] = field(default_factory=dict)  # check name -> PASSED | WARN | ERROR


def demo_partition_keys(partitions_def: dg.PartitionsDefinition | None,
                        now: datetime | None = None) -> list[str | None]:
    """Which partitions the demo materializes: the latest day that has ended, and every static key
    (region/property)."""
    if partitions_def is None:
        return [None]
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        dims = {d.name: d.partitions_def for d in partitions_def.partitions_defs}
        keys_per_dim = {name: demo_partition_keys(p, now) for name, p in dims.items()}
        combos: list[dict[str, str]] = [{}]
        for name, keys in keys_per_dim.items():
            combos = [{**c, name: k} for c in combos for k in keys]
        return [dg.MultiPartitionKey(c) for c in combos]
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        # Not today's partition (end_offset=1): in the early UTC hours today in the reporting time zone has not
        # started yet for an account or property west of it (Denver until 07:00 UTC), which the pipeline rightly
        # never asks, so its checks said "never loaded". Yesterday there has started everywhere.
        now = now or clock.now()
        today = partitions_def.time_window_for_partition_key(
            partitions_def.get_partition_key_for_timestamp(now.timestamp()))
        return [partitions_def.get_partition_key_for_timestamp(today.start.timestamp() - 1)]
    return list(partitions_def.get_partition_keys())


def plan(defs: dg.Definitions) -> list[tuple[list[dg.AssetKey], dg.PartitionsDefinition | None]]:
    """Batches of assets to run, in dependency order, as few as possible: an asset joins the latest batch
    with its partitions definition unless one of its upstream assets runs in a later batch."""
    graph = defs.resolve_asset_graph()
    batches: list[tuple[list[dg.AssetKey], dg.PartitionsDefinition | None]] = []
    batch_of: dict[dg.AssetKey, int] = {}
    for level in graph.toposorted_asset_keys_by_level:
        # a level's order is a set's (it changed with the hash seed: 6 batches or 8). Partitioned assets first:
        # the unpartitioned batch then opens after them, so their unpartitioned children (dbt) still join it
        for key in sorted(level, key=lambda k: (graph.get(k).partitions_def is None, k.to_user_string())):
            node = graph.get(key)
            if not node.is_materializable:
                continue
            pdef = node.partitions_def
            after = max((batch_of[p] for p in node.parent_keys if p in batch_of), default=-1)
            candidates = [i for i, (_, other) in enumerate(batches) if other == pdef and i >= after]
            if candidates:
                index = candidates[-1]
            else:
                batches.append(([], pdef))
                index = len(batches) - 1
            batches[index][0].append(key)
            batch_of[key] = index
    return batches


def deferred_check_keys(defs: dg.Definitions) -> list[dg.AssetCheckKey]:
    """The checks the demo evaluates once, after every batch: the standalone, non-blocking ones (lateness,
    all-scopes-loaded, ...). Evaluated per batch they would report the scopes of later batches as missing.
    Blocking checks stay in their batch (they guard what is downstream); dbt tests run inside dbt."""
    return [spec.key for checks in defs.asset_checks or [] for spec in checks.check_specs if not spec.blocking]


@dataclass
class Timings:
    steps: list[tuple[str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # a line per failed step, for the console's last lines

    def add(self, label: str, seconds: float) -> None:
        self.steps.append((label, seconds))


QUIET_RUN_CONFIG: dict = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
"""Dagster's console logger at WARNING: the events are in the instance (and the demo's log file). Valid run config
for any job of the code location, so a re-execution from the UI takes it over as it is."""


@dataclass(frozen=True)
class DemoJob:
    """The code location's implicit asset job (what the UI's "Materialize" runs), recorded as `adpipeline dev`
    loads it: the UI finds a run's job by its repository origin (location and repository name) and re-executes
    it from there, so a demo run can be opened and re-executed like any other."""

    job: dg.JobDefinition
    remote_origin: object  # RemoteJobOrigin
    code_origin: object  # JobPythonOrigin

    @classmethod
    def of(cls, defs: dg.Definitions) -> DemoJob:
        from dagster._core.definitions.reconstruct import ReconstructableRepository
        from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
        from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
        from dagster._core.workspace.load import location_origins_from_yaml_paths

        from adpipeline.stack import PROJECT_DIR

        job = defs.resolve_implicit_global_asset_job_def()
        [location] = location_origins_from_yaml_paths([str(PROJECT_DIR / "workspace.yaml")])
        remote = RemoteJobOrigin(RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME), job.name)
        target = location.loadable_target_origin
        code = ReconstructableRepository.for_module(
            target.module_name, target.attribute, target.working_directory).get_python_origin().get_job_origin(job.name)
        return cls(job, remote, code)

    def execute(self, instance: dg.DagsterInstance, assets: Sequence[dg.AssetKey],
                checks: Sequence[dg.AssetCheckKey], partition: str | None) -> dg.ExecuteInProcessResult:
        """One run of a subset of the asset job, executed here as `execute_in_process` does (the in-process
        executor: no process per step), but recorded with the job's origin and the code location's snapshot."""
        from dagster._core.execution.api import ExecuteRunWithPlanIterable, create_execution_plan, job_execution_iterator
        from dagster._core.execution.context_creation_job import (
            PlanOrchestrationContextManager,
            orchestration_context_event_generator,
        )
        from dagster._core.snap import snapshot_from_execution_plan

        selection = {"asset_selection": frozenset(assets), "asset_check_selection": frozenset(checks)}
        subset = self.job.get_subset(**selection)  # what the code location runs on re-execution: its snapshot
        in_process = subset.as_ephemeral_job(resource_defs={}, input_values={})
        tags = {"adpipeline/demo": "true"}
        if partition is not None:
            tags |= subset.get_tags_for_partition_key(partition, selected_asset_keys=assets)
        job = InMemoryJob(in_process)
        plan = create_execution_plan(job, run_config=QUIET_RUN_CONFIG, instance_ref=instance.get_ref(), tags=tags)
        run = instance.create_run(
            job_name=self.job.name, run_id=None, run_config=QUIET_RUN_CONFIG, status=None, tags=tags,
            root_run_id=None, parent_run_id=None, op_selection=None, resolved_op_selection=None, **selection,
            step_keys_to_execute=plan.step_keys_to_execute, job_snapshot=subset.get_job_snapshot(),
            execution_plan_snapshot=snapshot_from_execution_plan(plan, subset.get_job_snapshot_id()),
            parent_job_snapshot=subset.get_parent_job_snapshot(), remote_job_origin=self.remote_origin,
            job_code_origin=self.code_origin, asset_graph=subset.asset_layer.asset_graph)
        events = list(ExecuteRunWithPlanIterable(
            execution_plan=plan, iterator=job_execution_iterator,
            execution_context_manager=PlanOrchestrationContextManager(
                context_event_generator=orchestration_context_event_generator, job=job, execution_plan=plan,
                dagster_run=run, instance=instance, run_config=QUIET_RUN_CONFIG, executor_defs=None,
                output_capture=None, raise_on_error=False)))
        return dg.ExecuteInProcessResult(job_def=in_process, event_list=events,
                                         dagster_run=instance.get_run_by_id(run.run_id), output_capture={})


def write_events(instance: dg.DagsterInstance, run_id: str, log_file: Path) -> None:
    """Every event of a run, from the instance's event log, into the demo's log file."""
    with open(log_file, "a") as out:
        for entry in instance.all_logs(run_id):
            kind = entry.dagster_event.event_type_value if entry.dagster_event else "LOG"
            when = datetime.fromtimestamp(entry.timestamp).isoformat(sep=" ", timespec="milliseconds")
            out.write(f"{when} {logging.getLevelName(entry.level)} {run_id[:8]} {entry.step_key or '-'} {kind} "
                      f"{entry.user_message}\n")


def run_everything(defs: dg.Definitions, instance: dg.DagsterInstance, log_file: Path | None = None,
                   timings: Timings | None = None) -> dict[str, AssetSummary]:
    summary: dict[str, AssetSummary] = defaultdict(AssetSummary)
    timings = timings or Timings()
    batches = plan(defs)
    deferred = deferred_check_keys(defs)
    demo_job = DemoJob.of(defs)
    with ExitStack() as stack:
        if log_file is not None:  # what steps print (dbt's own log lines) goes there too; progress is on stderr
            stack.enter_context(redirect_stdout(stack.enter_context(open(log_file, "a"))))
        _run_batches(demo_job, defs, instance, batches, deferred, log_file, summary, timings)
    return summary


def _run_batches(demo_job: DemoJob, defs: dg.Definitions, instance: dg.DagsterInstance, batches, deferred,
                 log_file: Path | None, summary, timings: Timings) -> None:
    graph = defs.resolve_asset_graph()
    later = set(deferred)

    def record(run_id: str, success: bool, part: dict[str, AssetSummary], what: str) -> None:
        _merge(summary, part)
        if not success:
            for line in failure_lines(instance, run_id, what):
                log.error("%s", line)
                timings.failures.append(line)
        if log_file is not None:
            sys.stdout.flush()
            write_events(instance, run_id, log_file)

    for index, (keys, pdef) in enumerate(batches):
        checks = [c for key in keys for c in graph.get(key).check_keys if c not in later]
        label = ", ".join(k.to_user_string() for k in keys)
        partitions = demo_partition_keys(pdef)
        started, failed = time.monotonic(), 0
        outcomes = _run_partitions(demo_job, instance, keys, checks, partitions)
        for partition, (run_id, success, part) in zip(partitions, outcomes):
            failed += 0 if success else 1
            record(run_id, success, part, f"batch {index + 1}" + (f", partition {partition}" if partition else ""))
        elapsed = time.monotonic() - started
        scope = f"{len(partitions)} partition(s)" if pdef is not None else "unpartitioned"
        log.info("batch %d/%d (%s; %s): %s in %.1f s", index + 1, len(batches), label, scope,
                 "ok" if not failed else f"{failed} run(s) FAILED", elapsed)
        timings.add(f"batch {index + 1}: {label} [{scope}]", elapsed)
    if deferred:
        started = time.monotonic()
        [(run_id, success, part)] = _run_partitions(demo_job, instance, [], deferred, [None])
        record(run_id, success, part, "checks")
        elapsed = time.monotonic() - started
        log.info("checks (%d, once after every batch): %s in %.1f s", len(deferred),
                 "ok" if success else "FAILED", elapsed)
        timings.add(f"checks: {len(deferred)} evaluated once", elapsed)
        if not success:
            summary["(checks run)"].runs, summary["(checks run)"].failed_runs = 1, 1


def failure_lines(instance: dg.DagsterInstance, run_id: str, what: str) -> list[str]:
    """A failed run's failed steps, each with the first line of its error (the whole error is in the log file)."""
    lines = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        error = entry.dagster_event.step_failure_data.error
        while error is not None and error.cause is not None:  # Dagster's wrapper -> the step's own exception
            error = error.cause
        first = next((line for line in (error.message if error else "").splitlines() if line.strip()), "failed")
        lines.append(f"run {run_id[:8]} ({what}), step {entry.step_key}: {redact(first.strip())[:300]}")
    return lines or [f"run {run_id[:8]} ({what}) failed before any step (see the log file)"]


RunOutcome = tuple[str, bool, dict[str, "AssetSummary"]]  # run id, success, what the run did


MAX_WORKERS = 8
"""Forked workers of one batch at most: one per partition up to this. A run mostly waits (HTTP to the API, Postgres),
so the count follows I/O, not cores (2 here: batch 1's 8 regions took 31-46 s on 2 workers, 27-29 s on 8 with the
machine loaded; about the same either way when it was nearly idle). Bounded by
what the runs may hold at once: a worker is one region's run (4 requests in flight, the sandbox/API allows 16 per
region and client) and holds its own Postgres connections (the instance's pool and the warehouse's; 8 workers stay
far below max_connections=200)."""


def _run_partitions(demo_job: DemoJob, instance: dg.DagsterInstance, keys, checks, partitions) -> list[RunOutcome]:
    """One run per partition, in partition order. Several partitions run side by side in forked processes (fork
    inherits the loaded code location, so a worker starts in milliseconds); not in threads, as each in-process run
    reconfigures logging (`dictConfig`, not thread-safe)."""
    if len(partitions) == 1:
        return [_outcome(demo_job.execute(instance, keys, checks, partitions[0]), keys, partitions[0])]
    sys.stdout.flush()  # a forked worker would write the parent's buffered output again
    sys.stderr.flush()
    workers = min(len(partitions), MAX_WORKERS)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_start_worker,
                             initargs=(demo_job, instance.get_ref())) as pool:
        return list(pool.map(_run_in_worker, [(keys, checks, partition) for partition in partitions]))


_worker: tuple[DemoJob, dg.DagsterInstance] | None = None  # in a forked worker: the job and its own instance


def _start_worker(demo_job: DemoJob, instance_ref) -> None:
    global _worker
    _worker = (demo_job, dg.DagsterInstance.from_ref(instance_ref))  # its own connections


def _run_in_worker(args) -> RunOutcome:
    keys, checks, partition = args
    demo_job, instance = _worker
    return _outcome(demo_job.execute(instance, keys, checks, partition), keys, partition)


def _outcome(result: dg.ExecuteInProcessResult, keys, partition) -> RunOutcome:
    part: dict[str, AssetSummary] = defaultdict(AssetSummary)
    _collect(result, keys, partition, part)
    return result.run_id, result.success, dict(part)


def _merge(summary: dict[str, AssetSummary], part: dict[str, AssetSummary]) -> None:
    """One run's summary into the demo's, runs in order: counts add up, a table's size and a check's verdict are
    the latest run's."""
    for name, entry in part.items():
        into = summary[name]
        into.runs += entry.runs
        into.failed_runs += entry.failed_runs
        into.partitions += entry.partitions
        for kind, rows in entry.rows.items():
            into.rows[kind] = rows if kind == "total" else into.rows[kind] + rows
        into.checks.update(entry.checks)


def _collect(result: dg.ExecuteInProcessResult, keys, partition, summary) -> None:
    for key in keys:
        entry = summary[key.to_user_string()]
        entry.runs += 1
        entry.failed_runs += 0 if result.success else 1
        if partition:
            entry.partitions.append(str(partition))
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        entry = summary[mat.asset_key.to_user_string()]
        for name, value in mat.metadata.items():
            if name.startswith("rows_") and isinstance(value.value, int):
                entry.rows[name.removeprefix("rows_")] += value.value
            elif name == "dagster/row_count" and isinstance(value.value, int):
                entry.rows["total"] = value.value  # a built table (dbt): its size, not a delta
    for evaluation in result.get_asset_check_evaluations():
        # the latest evaluation wins: a multi-scope check run after the first partition says "never loaded"
        # for scopes that later runs load
        entry = summary[evaluation.asset_key.to_user_string()]
        entry.checks[evaluation.check_name] = "PASSED" if evaluation.passed else evaluation.severity.value


def render(summary: dict[str, AssetSummary]) -> str:
    lines = [f"{'ASSET':40} {'RUNS':>4}  {'ROWS (inserted/updated/deleted)':32}  CHECKS"]
    for name in sorted(summary):
        entry = summary[name]
        runs = f"{entry.runs - entry.failed_runs}/{entry.runs}"
        if "total" in entry.rows:
            rows = f"{entry.rows['total']} rows in table"
        elif entry.rows:
            rows = "/".join(str(entry.rows.get(k, 0)) for k in ("inserted", "updated", "deleted"))
        else:
            rows = "-"
        counts = defaultdict(int)
        for verdict in entry.checks.values():
            counts[verdict] += 1
        checks = ", ".join(f"{n} {v.lower()}" for v, n in sorted(counts.items())) or "-"
        lines.append(f"{name:40} {runs:>4}  {rows:32}  {checks}")
        for check, verdict in sorted(entry.checks.items()):
            if verdict != "PASSED":
                lines.append(f"{'':46}{verdict}: {check}")
    return "\n".join(lines)


def render_timings(timings: Timings, total: float) -> str:
    width = max((len(label) for label, _ in timings.steps), default=10)
    width = min(width, 100)
    lines = [f"{'STEP':{width}}  SECONDS"]
    lines += [f"{label[:width]:{width}}  {seconds:7.1f}" for label, seconds in timings.steps]
    lines.append(f"{'total':{width}}  {total:7.1f}")
    return "\n".join(lines)


def run_demo(keep_warehouse: bool = False) -> int:
    started = time.monotonic()
    timings = Timings()
    with local_stack(sandbox=True, keep_warehouse=keep_warehouse) as stack:
        from adpipeline.definitions import defs

        timings.add("set-up: warehouse, migrations, sandbox, code location", time.monotonic() - started)
        log_file = stack.dagster_home / "demo-events.log"
        for name in ("dagster", "dagster.builtin"):  # dagster-dbt's INFO lines (its command lines) stay off the console
            logging.getLogger(name).setLevel(logging.WARNING)
        log.info("Dagster events of the demo's runs: %s (and in the instance: `adpipeline dev`)", log_file)
        with dg.DagsterInstance.get() as instance:
            summary = run_everything(defs, instance, log_file=log_file, timings=timings)
        print()
        print(render(summary) if summary else "No assets are defined yet: nothing to materialize.")
        print()
        print(render_timings(timings, time.monotonic() - started))
        print()
        failed_runs = len({line.split()[1] for line in timings.failures})  # "run <id> ...": runs, not assets
        errored = [f"{name}: {check}" for name, e in sorted(summary.items())
                   for check, verdict in sorted(e.checks.items()) if verdict == "ERROR"]
        # the DSN's password masked: `adpipeline warehouse url` prints it whole, for psql and BI tools
        print(f"warehouse: {redact(stack.warehouse_url)}" + (
            "  (`adpipeline warehouse url` prints it with its password)" if keep_warehouse or not stack.started_warehouse
            else "  (stopped again; `adpipeline demo --keep-warehouse` leaves it running)"))
        print(f"dagster runs recorded in {stack.dagster_home} (see them with `adpipeline dev`)")
        if failed_runs or errored:
            # last, so that a CI log's tail says what broke
            for line in timings.failures + [f"ERROR check {check}" for check in errored]:
                print(f"  {line}")
            print(f"demo FAILED: {failed_runs} failed run(s), {len(errored)} ERROR check(s); "
                  f"every event: {log_file}")
            return 1
        print("demo OK")
        return 0
