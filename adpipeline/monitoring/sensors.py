"""Sensors TELL people: check results, run failures and the watchdog's findings become alerts.

Asset checks produce every signal; Dagster (OSS) alerts on none of them by itself, and run-failure
sensors never see non-blocking check failures (dagster #29896), so `check_alerts` reads the
ASSET_CHECK_EVALUATION events of every run (a cursor over the event log) and raises or resolves alerts.
"""


from collections.abc import Sequence

import dagster as dg

from adpipeline import clock
from adpipeline.monitoring.alerts import Alert, raise_alert, resolve_alert
from adpipeline.monitoring.checks import evaluate_refresh_job_ran
from adpipeline.monitoring.health import CRITICAL, Instigator, instigator_findings, stuck_run_findings
from adpipeline.warehouse.resource import WarehouseResource
from adpipeline.warehouse.tokens import token_states

CHECK_ALERT_BATCH = 500


def check_alert_sensor() -> dg.SensorDefinition:
    @dg.sensor(name="check_alerts", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Raises an alert for every failed asset check (critical for ERROR, warning for WARN) "
                           "and resolves it when the check passes again; deduplicated per check and partition.")
    def _sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SkipReason:
        cursor = int(context.cursor) if context.cursor else 0
        # The storage-level query: the instance-level wrapper is deprecated and Dagster offers no
        # fetch_* equivalent for check evaluations.
        records = context.instance.event_log_storage.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=cursor),
            limit=CHECK_ALERT_BATCH, ascending=True,
        )
        raised = resolved = 0
        with warehouse.connection() as conn:
            for record in records:
                evaluation = record.event_log_entry.dagster_event.event_specific_data
                key = evaluation.asset_check_key
                partition = getattr(evaluation, "partition", None)
                dedupe = f"check:{key.to_user_string()}" + (f"[{partition}]" if partition else "")
                summary = evaluation.metadata.get("summary")
                text = summary.value if summary is not None else (evaluation.description or "")
                if evaluation.passed:
                    resolved += resolve_alert(conn, dedupe, text or "check passed")
                    continue
                severity = "critical" if evaluation.severity == dg.AssetCheckSeverity.ERROR else "warning"
                raised += raise_alert(conn, Alert(
                    severity=severity, signal="asset_check", dedupe_key=dedupe,
                    title=f"check {key.name} failed on {key.asset_key.to_user_string()}",
                    message=text or "check failed", asset_key=key.asset_key.to_user_string(),
                    source=key.asset_key.path[0], dagster_run_id=record.run_id,
                ))
        if records:
            context.update_cursor(str(records[-1].storage_id))
        return dg.SkipReason(f"{len(records)} check evaluation(s): {raised} alert(s) raised, {resolved} resolved")

    return _sensor


def run_failure_alert_sensor() -> dg.SensorDefinition:
    @dg.run_failure_sensor(name="run_failure_alerts", default_status=dg.DefaultSensorStatus.RUNNING,
                           description="A critical alert for every failed run, naming the job and the error.")
    def _sensor(context: dg.RunFailureSensorContext, warehouse: WarehouseResource) -> None:
        run = context.dagster_run
        message = context.failure_event.message or "run failed"
        with warehouse.connection() as conn:
            raise_alert(conn, Alert(severity="critical", signal="run_failure", dedupe_key=f"run:{run.run_id}",
                                    title=f"run of {run.job_name} failed", message=message, dagster_run_id=run.run_id))

    return _sensor


def watchdog_sensor(expected: Sequence[Instigator]) -> dg.SensorDefinition:
    @dg.sensor(name="watchdog", minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Alerts when a schedule or sensor of this code location is stopped or not ticking when "
                           "due, a run exceeds its max runtime, or the Meta token job has not run for 2 hours.")
    def _sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SkipReason:
        now = clock.system_now()  # Dagster stamps ticks and runs with the host clock
        findings = instigator_findings(context.instance, [i for i in expected if i.name != "watchdog"], now)
        findings += stuck_run_findings(context.instance, now)
        critical = 0
        with warehouse.connection() as conn:
            for token in token_states(conn, "meta"):
                evaluation = evaluate_refresh_job_ran(token, clock.now(), f"meta token ({token.scope})")
                dedupe = f"watchdog:token_job:{token.scope}"
                if evaluation.passed:
                    resolve_alert(conn, dedupe, evaluation.description)
                else:
                    critical += raise_alert(conn, Alert("critical", "token_job_gap", "Meta token job not running",
                                                        evaluation.description, dedupe, source="meta", scope=token.scope))
            for finding in findings:
                dedupe = f"watchdog:{finding.kind}:{finding.subject}"
                if finding.severity == CRITICAL:
                    critical += raise_alert(conn, Alert("critical", f"{finding.kind}_health", finding.message,
                                                        finding.message, dedupe))
                elif finding.kind != "run":
                    resolve_alert(conn, dedupe, finding.message)
        return dg.SkipReason(f"{len(findings)} finding(s), {critical} new critical alert(s)")

    return _sensor
