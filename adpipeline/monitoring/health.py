"""What neither Dagster nor its daemon tells about themselves: used by the watchdog sensor (inside the
daemon) and by `adpipeline doctor` (outside it, the dead-man's switch).

Findings: a schedule or sensor of this code location stopped or not ticking when due, a daemon whose
heartbeat is stale, a run past its max runtime, and a summary of the latest check results.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

import dagster as dg
from dagster._core.definitions.selector import InstigatorSelector
from dagster._core.scheduler.instigation import InstigatorStatus
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    AssetCheckExecutionRecordStatus,
)
from dagster._utils.schedules import cron_string_iterator

from adpipeline.monitoring import thresholds as T

LOCATION = "adpipeline"
REPOSITORY = "__repository__"
CRITICAL, WARNING, OK = "CRITICAL", "WARNING", "OK"


@dataclass(frozen=True)
class Finding:
    severity: str  # CRITICAL | WARNING | OK
    kind: str  # daemon | schedule | sensor | run | check
    subject: str
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Instigator:
    name: str
    kind: str  # schedule | sensor
    running_by_default: bool
    cron: str | None = None
    timezone: str | None = None
    interval_s: int | None = None


def expected_instigators(defs: dg.Definitions) -> list[Instigator]:
    found = []
    for schedule in defs.schedules or []:
        found.append(Instigator(schedule.name, "schedule", schedule.default_status == dg.DefaultScheduleStatus.RUNNING,
                                cron=schedule.cron_schedule, timezone=schedule.execution_timezone or "UTC"))
    for sensor in defs.sensors or []:
        found.append(Instigator(sensor.name, "sensor", sensor.default_status == dg.DefaultSensorStatus.RUNNING,
                                interval_s=sensor.minimum_interval_seconds or 30))
    return found


def _last_due(inst: Instigator, now: datetime) -> datetime:
    """When the instigator last had to tick."""
    if inst.kind == "sensor":
        return now - timedelta(seconds=inst.interval_s or 30)
    tick = next(cron_string_iterator(now.timestamp(), inst.cron, inst.timezone, ascending=False))
    return tick if tick <= now else next(cron_string_iterator(tick.timestamp() - 1, inst.cron, inst.timezone, ascending=False))


def instigator_findings(instance: dg.DagsterInstance, expected: Sequence[Instigator], now: datetime) -> list[Finding]:
    """Stopped (critical), not ticking when due (critical), or not ticked yet (a warning: a fresh
    deployment has not ticked; a daemon that never runs shows up in the heartbeat findings)."""
    states = {s.name: s for s in instance.all_instigator_state()}
    grace = T.INSTIGATOR_TICK_GRACE.error
    findings = []
    for inst in expected:
        state = states.get(inst.name)
        status = state.status if state else None
        running = status == InstigatorStatus.RUNNING or (
            status in (None, InstigatorStatus.DECLARED_IN_CODE) and inst.running_by_default)
        if not running:
            findings.append(Finding(CRITICAL, inst.kind, inst.name, f"{inst.kind} '{inst.name}' is stopped: nothing it "
                                    "drives will run until it is started again"))
            continue
        selector_id = state.selector_id if state else InstigatorSelector(location_name=LOCATION, repository_name=REPOSITORY,
                                                                       name=inst.name).get_id()
        origin_id = state.instigator_origin_id if state else ""
        ticks = instance.get_ticks(origin_id, selector_id, limit=1)
        last_tick = datetime.fromtimestamp(ticks[0].timestamp, timezone.utc) if ticks else None
        due = _last_due(inst, now)
        if last_tick is None:
            findings.append(Finding(WARNING, inst.kind, inst.name, f"{inst.kind} '{inst.name}' has not ticked yet"))
            continue
        if due - last_tick > grace:
            findings.append(Finding(CRITICAL, inst.kind, inst.name, f"{inst.kind} '{inst.name}' has not ticked since "
                                    f"{last_tick:%Y-%m-%d %H:%M} UTC (due {due:%Y-%m-%d %H:%M %Z})"))
        else:
            findings.append(Finding(OK, inst.kind, inst.name, f"last tick {last_tick:%Y-%m-%d %H:%M} UTC"))
    return findings


def daemon_findings(instance: dg.DagsterInstance, now: datetime) -> list[Finding]:
    """Stale or missing heartbeats of the daemons this instance needs."""
    heartbeats = instance.get_daemon_heartbeats()
    limit = T.DAEMON_HEARTBEAT_STALE.error
    findings = []
    for daemon_type in instance.get_required_daemon_types():
        beat = heartbeats.get(daemon_type)
        if beat is None:
            findings.append(Finding(CRITICAL, "daemon", daemon_type, f"{daemon_type} has never sent a heartbeat: "
                                    "is `dagster-daemon run` running?"))
            continue
        at = datetime.fromtimestamp(beat.timestamp, timezone.utc)
        age = now - at
        if age > limit:
            findings.append(Finding(CRITICAL, "daemon", daemon_type, f"{daemon_type} heartbeat is {age // timedelta(seconds=1)} s "
                                    f"old (limit {limit // timedelta(seconds=1)} s): the daemon is down or stuck"))
        else:
            findings.append(Finding(OK, "daemon", daemon_type, f"heartbeat {age // timedelta(seconds=1)} s ago"))
    return findings


def stuck_run_findings(instance: dg.DagsterInstance, now: datetime,
                       max_runtime: timedelta | None = None) -> list[Finding]:
    limit = max_runtime or T.RUN_MAX_RUNTIME.error
    findings = []
    records = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=200)
    for record in records:
        started = record.start_time
        if started is None:
            continue
        age = now - datetime.fromtimestamp(started, timezone.utc)
        if age > limit:
            run = record.dagster_run
            findings.append(Finding(CRITICAL, "run", run.run_id, f"run {run.run_id[:8]} ({run.job_name}) has been running "
                                    f"for {age // timedelta(minutes=1)} min (max {limit // timedelta(minutes=1)} min)"))
    return findings


# Dagster's run monitoring fails a run past its max runtime, and its run retries would rerun it like a crashed
# one (the failure carries no reason): a hung run rerun hangs again. A run this close to its max runtime is
# marked "no retries" (Dagster's own dagster/max_retries tag) before monitoring fails it, by a sensor that
# ticks well inside this margin.
NO_RETRY_MARGIN = timedelta(minutes=5)
MAX_RETRIES_TAG, NO_RETRY_REASON_TAG = "dagster/max_retries", "adpipeline/no_retry_reason"


def runs_to_keep_from_retrying(instance: dg.DagsterInstance, now: datetime,
                               max_runtime: timedelta | None = None) -> list[dg.DagsterRun]:
    """Started runs within NO_RETRY_MARGIN of their max runtime (the run's dagster/max_runtime tag, else the
    thresholds table's, which dagster.yaml's run_monitoring uses too) not yet marked."""
    default = max_runtime or T.RUN_MAX_RUNTIME.error
    due = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=200):
        run = record.dagster_run
        if record.start_time is None or run.tags.get(MAX_RETRIES_TAG) == "0":
            continue
        try:
            limit = timedelta(seconds=float(run.tags["dagster/max_runtime"])) if "dagster/max_runtime" in run.tags else default
        except ValueError:
            limit = default
        if now - datetime.fromtimestamp(record.start_time, timezone.utc) > limit - NO_RETRY_MARGIN:
            due.append(run)
    return due


def keep_from_retrying(instance: dg.DagsterInstance, runs: Iterable[dg.DagsterRun]) -> list[str]:
    for run in runs:
        instance.add_run_tags(run.run_id, {MAX_RETRIES_TAG: "0",
                                           NO_RETRY_REASON_TAG: "near its max runtime: a rerun would hang again"})
    return [run.run_id for run in runs]


def check_findings(instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey]) -> list[Finding]:
    """The latest FINISHED evaluation of every check: ERROR failures are critical, WARN failures warnings.

    Dagster records a planned evaluation (ASSET_CHECK_EVALUATION_PLANNED) when a run that will evaluate the
    check starts; it stays planned while the run is in progress, and for good if the run ended before the check
    ran. A planned one never hides the previous result; a check with no result yet says why."""
    storage = instance.event_log_storage
    latest = storage.get_latest_asset_check_execution_by_key(list(check_keys))
    findings = []
    for key, record in sorted(latest.items(), key=lambda kv: kv[0].to_user_string()):
        subject = key.to_user_string()
        pending = None
        if record.status == AssetCheckExecutionRecordStatus.PLANNED:
            in_progress, pending = _pending_evaluation(instance, record.run_id)
            finished = storage.get_asset_check_execution_history(key, limit=1,
                                                                 status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES)
            if not finished:
                findings.append(Finding(OK if in_progress else WARNING, "check", subject, f"not evaluated yet ({pending})"))
                continue
            record = finished[0]
        evaluation = record.evaluation
        if evaluation is None:
            continue
        summary = evaluation.metadata.get("summary")
        text = summary.value if summary is not None else evaluation.description or ""
        if evaluation.passed:
            severity, text = OK, text or "passed"
        else:
            severity = CRITICAL if evaluation.severity == dg.AssetCheckSeverity.ERROR else WARNING
            text = text or "failed"
        findings.append(Finding(severity, "check", subject, f"{text} (newer evaluation: {pending})" if pending else text))
    return findings


def _pending_evaluation(instance: dg.DagsterInstance, run_id: str) -> tuple[bool, str]:
    """(in progress, what became of it) for a planned evaluation: its run still goes, or ended before the check ran."""
    run = instance.get_run_by_id(run_id)
    if run is not None and not run.is_finished:
        return True, f"in progress in run {run_id[:8]}"
    ended = f"ended ({run.status.value})" if run else "was deleted"
    return False, f"run {run_id[:8]} {ended} before the check ran"
