"""Sensors TELL people: check results, freshness changes, run failures and the watchdog's findings become
alerts (adpipeline/monitoring/alerts.py), and `alert_delivery` sends them through the configured sinks.

Asset checks produce every signal; Dagster (OSS) alerts on none of them by itself, and run-failure
sensors never see non-blocking check failures (dagster #29896), so `check_alerts` reads the
ASSET_CHECK_EVALUATION events of every run updated since its cursor. It asks the run storage for those runs
and each run's event log for its evaluations: queries every instance storage answers, including the
run-sharded SQLite event log of a plain `dagster dev` (which refuses cross-run event queries by storage id).
Only the LATEST evaluation per check (and partition) among the events read counts: a first start on an
instance with history alerts on the current state, never on replayed history (300 old evaluations are not
16 alerts and 16 resolutions); raising and resolving are idempotent, so reading a run twice is harmless.
`freshness_alerts` reads the freshness daemon's FRESHNESS_STATE_CHANGE events by storage id (asset events sit in
the index shard on SQLite too); the run-status sensors start from "now" on their first tick (Dagster's own
behaviour), so they replay nothing either.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

import dagster as dg

from adpipeline import clock
from adpipeline.config import AlertsConfig
from adpipeline.http.redact import redact
from adpipeline.monitoring.alerts import RUNBOOK, Alert, check_action, due_reminders, raise_alert, resolve_alert
from adpipeline.monitoring.checks import evaluate_refresh_job_ran
from adpipeline.monitoring.health import (
    CRITICAL,
    NO_RETRY_MARGIN,
    Instigator,
    instigator_findings,
    keep_from_retrying,
    runs_to_keep_from_retrying,
    stuck_run_findings,
)
from adpipeline.monitoring.sinks import deliver_pending
from adpipeline.warehouse.resource import WarehouseResource
from adpipeline.warehouse.tokens import token_states

EVENT_PAGE = 1000
EVENT_MAX_PAGES = 50  # per tick; the cursor keeps the rest for the next one
FRESHNESS_SEVERITY = {"FAIL": "critical", "WARN": "warning"}


_NEVER = datetime.min.replace(tzinfo=timezone.utc)

def _ui(config: AlertsConfig, path: str) -> str:
    return f"{config.ui_base_url.rstrip('/')}/{path.lstrip('/')}"


def _check_dedupe(evaluation) -> str:
    partition = getattr(evaluation, "partition", None)
    return f"check:{evaluation.asset_check_key.to_user_string()}" + (f"[{partition}]" if partition else "")


def _latest_per_key(context: dg.SensorEvaluationContext, event_type: dg.DagsterEventType,
                    key_of: Callable[[object], str]) -> tuple[int, int, dict[str, dg.EventLogRecord]]:
    """(new cursor, events read, {key: newest record}) over the events of `event_type` after the cursor."""
    cursor = int(context.cursor) if context.cursor else 0
    latest: dict[str, dg.EventLogRecord] = {}
    read = 0
    for _ in range(EVENT_MAX_PAGES):
        # The storage-level query: the instance-level wrapper is deprecated and Dagster offers no
        # fetch_* equivalent for check evaluations or freshness changes.
        page = context.instance.event_log_storage.get_event_records(
            dg.EventRecordsFilter(event_type=event_type, after_cursor=cursor), limit=EVENT_PAGE, ascending=True,
        )
        for record in page:
            latest[key_of(record.event_log_entry.dagster_event.event_specific_data)] = record
        read += len(page)
        if page:
            cursor = page[-1].storage_id
        if len(page) < EVENT_PAGE:
            break
    return cursor, read, latest


RUN_PAGE = 200  # runs read per tick; the cursor keeps the rest for the next one
_JUST_BEFORE = timedelta(microseconds=1)


def _check_evaluations_since(context: dg.SensorEvaluationContext) -> tuple[str, int, dict[str, tuple[str, object]]]:
    """(new cursor, evaluations read, {dedupe key: (run id, newest evaluation)}) over the runs updated since the
    cursor. The cursor is the last update time read plus the runs read at exactly that time (the filter is
    "updated after", so it re-asks from just before it); a run updated again later (it finished) is read again."""
    try:
        state = json.loads(context.cursor) if context.cursor else {}
    except ValueError:
        state = {}  # a cursor of the former event-log implementation: start from the current state
    state = state if isinstance(state, dict) else {}
    after = datetime.fromisoformat(state["updated_after"]) if state.get("updated_after") else None
    seen_at_cursor = set(state.get("runs", []))
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(updated_after=after - _JUST_BEFORE) if after else None,
        order_by="update_timestamp", ascending=True, limit=RUN_PAGE)
    latest: dict[str, tuple[float, str, object]] = {}
    read = 0
    for record in records:
        if record.update_timestamp == after and record.dagster_run.run_id in seen_at_cursor:
            continue
        for entry in context.instance.all_logs(record.dagster_run.run_id,
                                               of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = entry.dagster_event.event_specific_data
            key = _check_dedupe(evaluation)
            read += 1
            if key not in latest or entry.timestamp >= latest[key][0]:
                latest[key] = (entry.timestamp, entry.run_id, evaluation)
    if records:
        last = records[-1].update_timestamp
        at_last = {r.dagster_run.run_id for r in records if r.update_timestamp == last}
        state = {"updated_after": last.isoformat(), "runs": sorted(at_last | (seen_at_cursor if last == after else set()))}
    return json.dumps(state), read, {key: (run_id, evaluation) for key, (_, run_id, evaluation) in latest.items()}


def check_alert_sensor(config: AlertsConfig | None = None) -> dg.SensorDefinition:
    config = config or AlertsConfig()

    @dg.sensor(name="check_alerts", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Raises an alert when a check's latest evaluation fails (critical for ERROR, warning for "
                           "WARN) and resolves it when it passes again; deduplicated per check and partition.")
    def _sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SkipReason:
        cursor, read, latest = _check_evaluations_since(context)
        raised = resolved = 0
        with warehouse.connection() as conn:
            for dedupe, (run_id, evaluation) in latest.items():
                key = evaluation.asset_check_key
                summary = evaluation.metadata.get("summary")
                text = summary.value if summary is not None else (evaluation.description or "")
                if evaluation.passed:
                    resolved += resolve_alert(conn, dedupe, text or "check passed", config.sinks)
                    continue
                severity = "critical" if evaluation.severity == dg.AssetCheckSeverity.ERROR else "warning"
                asset = key.asset_key.to_user_string()
                raised += raise_alert(conn, Alert(
                    severity=severity, signal="asset_check", dedupe_key=dedupe,
                    title=f"check {key.name} failed on {asset}", message=text or "check failed", asset_key=asset,
                    source=key.asset_key.path[0], dagster_run_id=run_id, action=check_action(key.name),
                    link=_ui(config, f"assets/{asset}?view=checks"),
                ), config.sinks)
        context.update_cursor(cursor)
        return dg.SkipReason(f"{read} check evaluation(s), {len(latest)} check(s): {raised} alert(s) raised, "
                             f"{resolved} resolved")

    return _sensor


def freshness_alert_sensor(config: AlertsConfig | None = None) -> dg.SensorDefinition:
    """OSS Dagster evaluates freshness policies but alerts on none: the daemon's FRESHNESS_STATE_CHANGE events,
    latest per asset, become alerts (FAIL critical, WARN warning, PASS resolves)."""
    config = config or AlertsConfig()

    @dg.sensor(name="freshness_alerts", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Raises an alert when an asset's freshness state becomes FAIL (critical) or WARN (warning) "
                           "and resolves it when it passes again.")
    def _sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SkipReason:
        cursor, read, latest = _latest_per_key(context, dg.DagsterEventType.FRESHNESS_STATE_CHANGE,
                                               lambda change: f"freshness:{change.key.to_user_string()}")
        raised = resolved = 0
        with warehouse.connection() as conn:
            for dedupe, record in latest.items():
                change = record.event_log_entry.dagster_event.event_specific_data
                asset, state = change.key.to_user_string(), change.new_state.value
                if state == "PASS":
                    resolved += resolve_alert(conn, dedupe, f"{asset} is fresh again", config.sinks)
                elif state in FRESHNESS_SEVERITY:
                    raised += raise_alert(conn, Alert(
                        severity=FRESHNESS_SEVERITY[state], signal="freshness", dedupe_key=dedupe,
                        title=f"{asset} is stale ({state})", asset_key=asset, source=change.key.path[0],
                        message=f"{asset} has not been updated within its freshness policy",
                        action=RUNBOOK["freshness"], link=_ui(config, f"assets/{asset}"),
                    ), config.sinks)
        context.update_cursor(str(cursor))
        return dg.SkipReason(f"{read} freshness change(s): {raised} alert(s) raised, {resolved} resolved")

    return _sensor


def failure_sentence(step_failures: Sequence[dg.DagsterEvent], fallback: str) -> str:
    """The classified one-sentence error a step raised (dg.Failure's description), else the innermost
    exception's first line; Dagster's own "Execution of run ... failed" only when there is nothing else."""
    for event in step_failures:
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return f"{event.step_key}: {data.user_failure_data.description}"
        error = data.error
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None and error.message.strip():
            return f"{event.step_key}: {error.message.strip().splitlines()[0]}"
    return fallback


def run_failure_dedupe(job_name: str) -> str:
    """One incident per job: repeated failures of a job are one open alert until its runs succeed again (every
    partition that failed, see `still_failing_partitions`)."""
    return f"run_failure:{job_name}"


EXTRACTION_SOURCES = ("meta", "breezeway", "ga4")


def source_of_step(step_key: str | None) -> str | None:
    """The API an extraction step pulls from: an asset's step key is its key joined by "__" (meta__ad_accounts),
    a multi-asset's is its name (meta_insights). dbt steps (dbt_meta_daily) and checks have no source."""
    head = (step_key or "").split("_", 1)[0]
    return head if head in EXTRACTION_SOURCES else None


def run_failure_alert_sensor(config: AlertsConfig | None = None) -> dg.SensorDefinition:
    config = config or AlertsConfig()

    @dg.run_failure_sensor(name="run_failure_alerts", default_status=dg.DefaultSensorStatus.RUNNING,
                           description="A critical alert when a job's runs start failing (one per job until a run "
                                       "of it succeeds), with the step's one-sentence error and a link to the run.")
    def _sensor(context: dg.RunFailureSensorContext, warehouse: WarehouseResource) -> None:
        run = context.dagster_run
        failures = context.get_step_failure_events()
        sentence = failure_sentence(failures, context.failure_event.message or "run failed")
        source = source_of_step(failures[0].step_key) if failures else None
        partition = run.tags.get("dagster/partition")
        with warehouse.connection() as conn:
            raise_alert(conn, Alert(
                severity="critical", signal="run_failure", dedupe_key=run_failure_dedupe(run.job_name),
                title=f"run of {run.job_name} failed" + (f" ({partition})" if partition else ""),
                message=redact(sentence), dagster_run_id=run.run_id, action=RUNBOOK["run_failure"],
                source=source,
                link=_ui(config, f"runs/{run.run_id}"),
            ), config.sinks)

    return _sensor


RECOVERY_LOOKBACK_RUNS = 200  # the job's latest finished runs a recovery looks at (a few ticks of per-scope runs)


def still_failing_partitions(instance: dg.DagsterInstance, job_name: str) -> list[str]:
    """Partitions of the job whose latest finished run failed, among its latest finished runs. A job with one run
    per region or (day, property) has one run-failure alert for all; it resolves only when none is failing.
    Runs without a single partition (unpartitioned, or a partition range) count as one partition ("")."""
    latest: dict[str, dg.DagsterRunStatus] = {}
    runs = instance.get_runs(dg.RunsFilter(job_name=job_name, statuses=[dg.DagsterRunStatus.SUCCESS,
                                                                        dg.DagsterRunStatus.FAILURE]),
                             limit=RECOVERY_LOOKBACK_RUNS)
    for run in runs:  # newest first
        latest.setdefault(run.tags.get("dagster/partition", ""), run.status)
    return [key for key, status in latest.items() if status == dg.DagsterRunStatus.FAILURE]


def run_recovery_alert_sensor(config: AlertsConfig | None = None) -> dg.SensorDefinition:
    config = config or AlertsConfig()

    @dg.run_status_sensor(name="run_recovery_alerts", run_status=dg.DagsterRunStatus.SUCCESS,
                          default_status=dg.DefaultSensorStatus.RUNNING,
                          description="Resolves a job's run-failure alert when a run of that job succeeds and no "
                                      "partition of it (region, day and property) is still failing.")
    def _sensor(context: dg.RunStatusSensorContext, warehouse: WarehouseResource) -> None:
        run = context.dagster_run
        failing = still_failing_partitions(context.instance, run.job_name)
        if failing:  # another region's / property's success does not mend the one that failed
            context.log.info(f"{run.job_name}: run-failure alert kept open, latest run failed for {failing[:5]}")
            return
        with warehouse.connection() as conn:
            resolve_alert(conn, run_failure_dedupe(run.job_name), f"run {run.run_id[:8]} of {run.job_name} succeeded",
                          config.sinks)

    return _sensor


def watchdog_sensor(expected: Sequence[Instigator], config: AlertsConfig | None = None) -> dg.SensorDefinition:
    config = config or AlertsConfig()

    @dg.sensor(name="watchdog", minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Alerts when a schedule or sensor of this code location is stopped or not ticking when "
                           "due, a run exceeds its max runtime, or the Meta token job has not run for 2 hours.")
    def _sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SkipReason:
        now = clock.system_now()  # Dagster stamps ticks and runs with the host clock
        findings = instigator_findings(context.instance, [i for i in expected if i.name != "watchdog"], now)
        findings += stuck_run_findings(context.instance, now)
        critical, problems = 0, []
        with warehouse.connection() as conn:
            # per scope, the row the token job checked last: a row of an API no longer in use is not "the job"
            checked = sorted(token_states(conn, "meta"), key=lambda t: t.last_checked_at or _NEVER)
            for token in {t.scope: t for t in checked}.values():
                evaluation = evaluate_refresh_job_ran(token, clock.now(), f"meta token ({token.scope})")
                dedupe = f"watchdog:token_job:{token.scope}"
                if evaluation.passed:
                    resolve_alert(conn, dedupe, evaluation.description, config.sinks)
                else:
                    problems.append(evaluation.description)
                    critical += raise_alert(conn, Alert(
                        "critical", "token_job_gap", "Meta token job not running", evaluation.description, dedupe,
                        source="meta", scope=token.scope, action=RUNBOOK["token_job_gap"],
                        link=_ui(config, "automation")), config.sinks)
            for finding in findings:
                dedupe = f"watchdog:{finding.kind}:{finding.subject}"
                signal = f"{finding.kind}_health"
                link = _ui(config, f"runs/{finding.subject}" if finding.kind == "run" else "automation")
                if finding.severity == CRITICAL:
                    problems.append(finding.message)
                    critical += raise_alert(conn, Alert("critical", signal, finding.message, finding.message, dedupe,
                                                        action=RUNBOOK.get(signal), link=link), config.sinks)
                elif finding.kind != "run":
                    resolve_alert(conn, dedupe, finding.message, config.sinks)
        # the tick's message is what the UI shows of the watchdog (Automation > watchdog > ticks): name the problems
        named = ": " + "; ".join(problems) if problems else ""
        return dg.SkipReason(f"{len(findings)} finding(s), {critical} new critical alert(s){named}")

    return _sensor


def alert_delivery_sensor(config: AlertsConfig) -> dg.SensorDefinition:
    @dg.sensor(name="alert_delivery", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Sends queued alert messages through the configured sinks (Slack, webhook, e-mail) with "
                           "retry and backoff per sink, summarises bursts, and repeats open critical alerts every "
                           f"{config.renotify_critical_minutes} min.")
    def _sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SkipReason:
        now = clock.now()
        with warehouse.connection() as conn:
            reminders = due_reminders(conn, config.sinks, timedelta(minutes=config.renotify_critical_minutes), now)
            outcomes = deliver_pending(conn, config, now)
        told = "; ".join(f"{sink}: {outcome}" for sink, outcome in outcomes.items()) or "nothing due"
        return dg.SkipReason(f"{reminders} reminder(s) queued; {told}")

    return _sensor


def max_runtime_guard_sensor() -> dg.SensorDefinition:
    @dg.sensor(name="max_runtime_guard", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Marks a run within {NO_RETRY_MARGIN // timedelta(minutes=1)} min of its max runtime "
                           "'no retries' (dagster/max_retries=0), so when run monitoring fails it, it is not rerun "
                           "to hang again; crashed workers are still retried.")
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        runs = runs_to_keep_from_retrying(context.instance, clock.system_now())  # Dagster's run times: host clock
        marked = keep_from_retrying(context.instance, runs)
        for run_id in marked:
            context.log.warning(f"run {run_id} is near its max runtime: it will not be retried if it is failed for it")
        return dg.SkipReason(f"{len(marked)} run(s) near their max runtime marked no-retry")

    return _sensor
