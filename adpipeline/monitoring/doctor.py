"""`adpipeline doctor`: the dead-man's switch that runs outside the daemon.

Usable from cron, a Kubernetes liveness probe or CI. Exit codes:
  0  nothing is critical
  2  something is: daemon heartbeat stale, a schedule or sensor stopped or not ticking, a run stuck past its
     max runtime, an ERROR check failing
  3  the instance cannot be reached (the warehouse that holds it is down or refuses the connection)
  4  a configuration error: the sources config (adpipeline.yaml) or the instance's (DAGSTER_HOME/dagster.yaml)
  5  doctor itself failed (a bug: the traceback goes to stderr), so nothing is known about the deployment
Every failure is also printed as one CRITICAL finding (in the --json shape too).
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from datetime import datetime

import dagster as dg
import psycopg
import psycopg2
import sqlalchemy.exc
from dagster._core.errors import DagsterHomeNotSetError
from dagster_postgres.utils import DagsterPostgresException

from adpipeline import clock
from adpipeline.config import ConfigError
from adpipeline.http.redact import redact
from adpipeline.monitoring.health import (
    CRITICAL,
    OK,
    WARNING,
    Finding,
    check_findings,
    daemon_findings,
    expected_instigators,
    instigator_findings,
    stuck_run_findings,
)

EXIT_OK, EXIT_CRITICAL, EXIT_UNREACHABLE, EXIT_CONFIG, EXIT_INTERNAL = 0, 2, 3, 4, 5
# what "cannot reach the instance" looks like from the Postgres drivers and dagster-postgres' retries
CONNECTION_ERRORS = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, psycopg2.OperationalError,
                     psycopg2.InterfaceError, psycopg.OperationalError, DagsterPostgresException, ConnectionError,
                     TimeoutError)


def diagnose(load_defs: Callable[[], dg.Definitions], as_json: bool = False) -> int:
    """Load the definitions, read the instance, print the findings; the exit code (see the module docstring).

    A failure is reported as what it is: only a connection failure means "unreachable"."""
    stage = "load"
    try:
        defs = load_defs()
        stage = "open"
        with dg.DagsterInstance.get() as instance:
            stage = "read"
            findings = collect(instance, defs)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one finding with its own exit code
        return _failed(exc, stage, as_json)
    return report(findings, as_json)


def failure_kind(exc: BaseException, stage: str) -> str:
    """What a failure of a command reading the instance means for its exit code: "unreachable" (the
    instance or warehouse cannot be reached), "config" (a config error, or the instance would not open), or
    "bug"."""
    if _caused_by(exc, CONNECTION_ERRORS):
        return "unreachable"
    if _caused_by(exc, (ConfigError, dg.DagsterInvalidConfigError, DagsterHomeNotSetError)) or stage == "open":
        return "config"
    return "bug"


def _failed(exc: Exception, stage: str, as_json: bool) -> int:
    text = f"{type(exc).__name__}: {exc}"
    kind = failure_kind(exc, stage)
    if kind == "unreachable":
        return unreachable(f"cannot reach the Dagster instance: {text}", as_json)
    if kind == "config":
        subject = "sources config" if stage == "load" else "dagster instance"
        return _print_failure(EXIT_CONFIG, "config", subject, f"configuration error: {text}", as_json)
    print(redact(traceback.format_exc()), file=sys.stderr)
    return _print_failure(EXIT_INTERNAL, "doctor", "adpipeline doctor",
                          f"doctor failed on a bug, so the deployment's health is unknown: {text}", as_json)


def _caused_by(exc: BaseException | None, types: tuple[type[BaseException], ...]) -> bool:
    """Whether exc or anything in its chain (dagster-postgres and SQLAlchemy wrap the driver's error) is one of types."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, types):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def collect(instance: dg.DagsterInstance, defs: dg.Definitions, now: datetime | None = None) -> list[Finding]:
    now = now or clock.system_now()  # Dagster stamps its records with the host clock
    findings = daemon_findings(instance, now)
    findings += instigator_findings(instance, expected_instigators(defs), now)
    findings += stuck_run_findings(instance, now)
    findings += check_findings(instance, defs.resolve_asset_graph().asset_check_keys)
    return findings


def render(findings: list[Finding]) -> str:
    order = {CRITICAL: 0, WARNING: 1, OK: 2}
    lines = []
    for kind in ("daemon", "schedule", "sensor", "run", "check"):
        group = sorted((f for f in findings if f.kind == kind), key=lambda f: (order[f.severity], f.subject))
        if not group:
            continue
        lines.append(f"{kind.upper()}S")
        for f in group:
            lines.append(f"  {f.severity:8} {f.subject:45} {f.message}")
    counts = {s: sum(f.severity == s for f in findings) for s in (CRITICAL, WARNING, OK)}
    lines.append(f"\n{counts[CRITICAL]} critical, {counts[WARNING]} warning(s), {counts[OK]} ok")
    return "\n".join(lines)


def report(findings: list[Finding], as_json: bool = False) -> int:
    """Print the findings (a table or JSON); the exit code they mean."""
    if as_json:
        print(json.dumps({"findings": [f.as_dict() for f in findings],
                          "critical": sum(f.severity == CRITICAL for f in findings)}, indent=2))
    else:
        print(render(findings))
    return EXIT_CRITICAL if any(f.severity == CRITICAL for f in findings) else EXIT_OK


def unreachable(message: str, as_json: bool = False) -> int:
    """Print that the instance cannot be reached; EXIT_UNREACHABLE."""
    return _print_failure(EXIT_UNREACHABLE, "instance", "dagster", message, as_json)


def _print_failure(code: int, kind: str, subject: str, message: str, as_json: bool) -> int:
    """Print a failure that left no findings as one CRITICAL finding; return its exit code."""
    message = redact(message)
    print(json.dumps({"findings": [{"severity": CRITICAL, "kind": kind, "subject": subject, "message": message}],
                      "critical": 1}) if as_json else f"CRITICAL  {message}")
    return code
