"""`adpipeline check`: run the selected asset checks once, without materializing anything, for CI.

Dagster has no CLI that runs asset checks (dagster #17606). Here the selected standalone checks run as ONE
in-process run of a checks-only job (`AssetSelection.checks`) against the configured instance, so their
evaluations are recorded like a scheduled run's: they show in the UI and the `check_alerts` sensor turns them
into alerts. The results are printed as a table (or JSON) and optionally written as JUnit XML.

Exit codes (doctor's convention for 3-5):
  0  every check passed (or only WARNs, unless --fail-on warn)
  1  a check is WARN and --fail-on warn
  2  a check is ERROR, or did not produce an evaluation (its step failed)
  3  the warehouse or the Dagster instance cannot be reached
  4  a configuration error (sources config, instance config, or a --select that matches nothing)
  5  the command itself failed (a bug; traceback on stderr)
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
import psycopg

from adpipeline.http.redact import redact
from adpipeline.monitoring.doctor import failure_kind

EXIT_PASS, EXIT_WARN, EXIT_ERROR, EXIT_UNREACHABLE, EXIT_CONFIG, EXIT_INTERNAL = 0, 1, 2, 3, 4, 5
JOB_NAME = "adpipeline_check"
RUN_TAGS = {"adpipeline/trigger": "adpipeline check"}  # tells these runs apart in the UI
PASS, WARN, ERROR = "PASS", "WARN", "ERROR"


class SelectionError(ValueError):
    """A --select token that matches no check."""


@dataclass(frozen=True)
class CheckOutcome:
    check: str  # "asset/key:name"
    asset: str
    name: str
    status: str  # PASS | WARN | ERROR
    description: str
    evaluated: bool = True

    def fails(self, fail_on: str) -> bool:
        return self.status == ERROR or (self.status == WARN and fail_on == "warn")


# -- selection ---------------------------------------------------------------------------------------------------

def runnable_checks(defs: dg.Definitions) -> dict[dg.AssetCheckKey, str]:
    """Every standalone check (those a checks-only job can run) -> its asset's group.

    Checks declared inline on an asset (dbt tests) run only when their asset materializes."""
    graph = defs.resolve_asset_graph()
    found = {}
    for checks in defs.asset_checks or []:
        for spec in checks.check_specs:
            asset = spec.asset_key
            found[spec.key] = graph.get(asset).group_name if graph.has(asset) else ""
    return found


def select(checks: dict[dg.AssetCheckKey, str], tokens: Iterable[str]) -> list[dg.AssetCheckKey]:
    """The checks matched by any token: a check key (`meta/ads_insights:lateness`), an asset key
    (`meta/ads_insights`), a group (`breezeway`), a source (first key part, `ga4`) or a check name
    (`lateness`). No tokens: every runnable check. A token that matches nothing is an error (a typo in CI
    must not pass silently)."""
    tokens = [t.strip() for token in tokens for t in token.split(",") if t.strip()]
    if not tokens:
        return sorted(checks, key=lambda k: k.to_user_string())
    chosen: set[dg.AssetCheckKey] = set()
    for token in tokens:
        matched = {key for key, group in checks.items() if token in (
            key.to_user_string(), key.asset_key.to_user_string(), group, key.asset_key.path[0], key.name)}
        if not matched:
            raise SelectionError(f"--select {token!r} matches no asset check (a check key like "
                                 f"meta/ads_insights:lateness, an asset key, a group, a source or a check name)")
        chosen |= matched
    return sorted(chosen, key=lambda k: k.to_user_string())


# -- execution ---------------------------------------------------------------------------------------------------

def execute(defs: dg.Definitions, keys: Sequence[dg.AssetCheckKey], instance: dg.DagsterInstance
            ) -> tuple[str, list[CheckOutcome]]:
    """One in-process run of the selected checks, recorded in `instance`; (run id, one outcome per check)."""
    job = dg.define_asset_job(JOB_NAME, selection=dg.AssetSelection.checks(*keys),
                              description="adpipeline check: the selected asset checks, nothing materialized.")
    job_def = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(JOB_NAME)
    result = job_def.execute_in_process(instance=instance, raise_on_error=False, tags=RUN_TAGS)
    evaluations = {e.asset_check_key: e for e in result.get_asset_check_evaluations()}
    failures = [e.event_specific_data.error for e in result.all_events if e.is_step_failure]
    outcomes = []
    for key in keys:
        evaluation = evaluations.get(key)
        if evaluation is None:  # its step failed before it produced a result
            cause = "; ".join(redact(f"{err.cls_name}: {err.message.strip()}") for err in failures if err) or "no result"
            outcomes.append(CheckOutcome(key.to_user_string(), key.asset_key.to_user_string(), key.name, ERROR,
                                         f"not evaluated: {cause}", evaluated=False))
            continue
        status = PASS if evaluation.passed else WARN if evaluation.severity == dg.AssetCheckSeverity.WARN else ERROR
        summary = evaluation.metadata.get("summary")
        text = summary.value if summary is not None else (evaluation.description or "")
        outcomes.append(CheckOutcome(key.to_user_string(), key.asset_key.to_user_string(), key.name, status,
                                     redact(str(text))))
    return result.run_id, outcomes


def exit_code(outcomes: Sequence[CheckOutcome], fail_on: str) -> int:
    statuses = {o.status for o in outcomes}
    if ERROR in statuses:
        return EXIT_ERROR
    if WARN in statuses and fail_on == "warn":
        return EXIT_WARN
    return EXIT_PASS


# -- reports -----------------------------------------------------------------------------------------------------

def render(outcomes: Sequence[CheckOutcome], run_id: str) -> str:
    width = max([len("CHECK"), *(len(o.check) for o in outcomes)])
    lines = [f"{'CHECK':{width}}  RESULT  DETAIL"]
    lines += [f"{o.check:{width}}  {o.status:6}  {o.description}" for o in outcomes]
    counts = {s: sum(o.status == s for o in outcomes) for s in (PASS, WARN, ERROR)}
    lines.append(f"\n{counts[PASS]} passed, {counts[WARN]} warn, {counts[ERROR]} error; "
                 f"recorded in the Dagster instance as run {run_id}")
    return "\n".join(lines)


def junit_xml(outcomes: Sequence[CheckOutcome], fail_on: str, run_id: str, seconds: float) -> bytes:
    """One testcase per check. ERROR is a <failure> (a check that produced no result is an <error>); WARN is a
    <failure> only under --fail-on warn, otherwise a passing case whose output says WARN."""
    failures = sum(o.fails(fail_on) and o.evaluated for o in outcomes)
    errors = sum(not o.evaluated for o in outcomes)
    counts = {"tests": str(len(outcomes)), "failures": str(failures), "errors": str(errors), "skipped": "0",
              "time": f"{seconds:.3f}"}
    suites = ET.Element("testsuites", name="adpipeline check", **counts)
    suite = ET.SubElement(suites, "testsuite", name="adpipeline asset checks", **counts)
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="dagster_run_id", value=run_id)
    ET.SubElement(props, "property", name="fail_on", value=fail_on)
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", classname=o.asset, name=o.name, time="0")
        if not o.evaluated:
            ET.SubElement(case, "error", type="NOT_EVALUATED", message=o.description).text = o.description
        elif o.fails(fail_on):
            ET.SubElement(case, "failure", type=o.status, message=o.description).text = f"{o.status}: {o.description}"
        else:
            ET.SubElement(case, "system-out").text = f"{o.status}: {o.description}"
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


# -- the command -------------------------------------------------------------------------------------------------

def run(load_defs: Callable[[], dg.Definitions], warehouse_url: str, *, select_tokens: Sequence[str] = (),
        fail_on: str = "error", junit: Path | None = None, as_json: bool = False) -> int:
    """Probe the warehouse, load the definitions, open the instance, run the checks, report; the exit code."""
    stage = "warehouse"
    try:
        with psycopg.connect(warehouse_url, connect_timeout=10) as conn:  # the checks' only data source
            conn.execute("SELECT 1")
        stage = "load"
        defs = load_defs()
        keys = select(runnable_checks(defs), select_tokens)
        stage = "open"
        with dg.DagsterInstance.get() as instance:
            stage = "read"
            instance.get_runs_count()  # reach the instance's storage before running anything
            stage = "run"
            started = time.monotonic()
            run_id, outcomes = execute(defs, keys, instance)
            seconds = time.monotonic() - started
    except Exception as exc:  # noqa: BLE001 - each failure becomes one line with its own exit code
        return _failed(exc, stage, as_json)
    code = exit_code(outcomes, fail_on)
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_bytes(junit_xml(outcomes, fail_on, run_id, seconds))
    if as_json:
        counts = {s: sum(o.status == s for o in outcomes) for s in (PASS, WARN, ERROR)}
        print(json.dumps({"run_id": run_id, "fail_on": fail_on, "exit_code": code, "counts": counts,
                          "checks": [asdict(o) for o in outcomes]}, indent=2))
    else:
        print(render(outcomes, run_id))
    return code


def _failed(exc: Exception, stage: str, as_json: bool) -> int:
    text = redact(f"{type(exc).__name__}: {exc}")
    kind = failure_kind(exc, stage)
    if kind == "unreachable":
        what = "warehouse" if stage == "warehouse" else "Dagster instance"
        return fail(EXIT_UNREACHABLE, f"cannot reach the {what}: {text}", as_json)
    if isinstance(exc, SelectionError):
        return fail(EXIT_CONFIG, str(exc), as_json)
    if kind == "config":
        return fail(EXIT_CONFIG, f"configuration error: {text}", as_json)
    print(redact(traceback.format_exc()), file=sys.stderr)
    return fail(EXIT_INTERNAL, f"adpipeline check failed on a bug, so the checks' results are unknown: {text}",
                as_json)


def fail(code: int, message: str, as_json: bool) -> int:
    """Print a failure that left no results; return its exit code."""
    message = redact(message)
    print(json.dumps({"exit_code": code, "error": message, "checks": []}) if as_json else f"ERROR  {message}",
          file=sys.stdout if as_json else sys.stderr)
    return code
