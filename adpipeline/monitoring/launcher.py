"""The run launcher of a single-host instance (`adpipeline dev|demo`, dagster.yaml): Dagster's DefaultRunLauncher
(runs start in a process of the local code server) plus a worker health check, so the run-monitoring daemon fails
a run whose worker died (SIGKILL, OOM) within its poll interval instead of leaving it STARTED until
max_runtime_seconds. DefaultRunLauncher cannot check a worker (dagster 1.13: `supports_check_run_worker_health` is
False); the container launchers of the deployed stack can.

At launch the run is tagged with this host when its code server is local. The worker reports its pid itself
(the engine event "Started process for run (pid: N)"). The check reads both: the worker is FAILED when that process
is gone, a zombie, or a newer process reuses its pid; RUNNING otherwise. A worker on another host, or one that has
not reported its pid yet, cannot be judged here: Dagster fails a run on any other answer than RUNNING or SUCCESS,
so those are RUNNING (with the reason), and the start timeout and max runtime still apply to them.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from dagster import DagsterEventType, DagsterRun, DefaultRunLauncher
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus

HOST_TAG = "adpipeline/run_worker_host"
_LOCAL = {"localhost", "127.0.0.1", "::1"}
_STARTED = "Started process for run"
_PID_REUSE_SLACK = 5.0  # seconds between the worker's start and its pid event, at most


class LocalRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose workers' health the run-monitoring daemon can check (same host only)."""

    def __init__(self, inst_data: Any = None) -> None:
        super().__init__(inst_data)
        self._workers: dict[str, tuple[int, float]] = {}  # run id -> (pid, when it reported)

    def launch_run(self, context: LaunchRunContext) -> None:
        location = context.workspace.get_code_location(  # type: ignore[union-attr]
            context.dagster_run.remote_job_origin.repository_origin.code_location_origin.location_name)  # type: ignore[union-attr]
        client = getattr(location, "client", None)
        if client is not None and (client.socket or client.host in _LOCAL | {socket.gethostname()}):
            self._instance.add_run_tags(context.dagster_run.run_id, {HOST_TAG: socket.gethostname()})
        super().launch_run(context)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        host = run.tags.get(HOST_TAG)
        if host != socket.gethostname():
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker on {host or 'an unknown host'}: not "
                                        "checked from here (max runtime still applies)")
        # the worker reports its pid once: read the event log until then, not at every poll of a long run
        started = self._workers.get(run.run_id) or worker_started(self._instance, run.run_id)
        if started is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker has not reported its pid yet")
        if len(self._workers) > 1000:  # finished runs are never asked about again: forget them now and then
            self._workers.clear()
        self._workers[run.run_id] = started
        pid, at = started
        gone = process_gone(pid, at)
        if gone:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} on {host} {gone} without "
                                        "ending the run (killed or crashed)", run_worker_id=str(pid))
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker process {pid} alive", run_worker_id=str(pid))


def worker_started(instance: Any, run_id: str) -> tuple[int, float] | None:
    """(pid, timestamp) of the run's latest worker, from the engine event the worker writes when it starts."""
    for record in reversed(instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)):
        event = record.dagster_event
        if event is None or not (event.message or "").startswith(_STARTED):
            continue
        pid = event.engine_event_data.metadata.get("pid") if event.engine_event_data else None
        try:
            return int(pid.value if hasattr(pid, "value") else pid), record.timestamp
        except (TypeError, ValueError):
            return None
    return None


def process_gone(pid: int, started_by: float) -> str | None:
    """Why process `pid` (which reported itself at `started_by`, epoch seconds) is no longer the worker: "exited",
    "is a zombie", "was replaced" (its pid reused); None while it runs. Linux /proc: a single-host instance."""
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
    except FileNotFoundError:
        return "exited"
    except OSError:  # exists, not readable by us (another user): alive as far as we can tell
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3, starttime field 22
    if fields[0] in ("Z", "X"):
        return "is a zombie"
    try:
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        began = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return "was replaced" if began > started_by + _PID_REUSE_SLACK else None
