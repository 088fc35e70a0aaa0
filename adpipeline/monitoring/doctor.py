"""`adpipeline doctor`: the dead-man's switch that runs outside the daemon.

Usable from cron, a Kubernetes liveness probe or CI: exit 0 when nothing is critical, 2 when something
is (daemon heartbeat stale, a schedule or sensor stopped or not ticking, a run stuck past its max
runtime, an ERROR check failing), 3 when the instance itself cannot be reached.
"""

from __future__ import annotations

import json
from datetime import datetime

import dagster as dg

from adpipeline import clock
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

EXIT_OK, EXIT_CRITICAL, EXIT_UNREACHABLE = 0, 2, 3


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
    """Print that the instance cannot be read; EXIT_UNREACHABLE."""
    from adpipeline.http.redact import redact

    message = redact(message)
    print(json.dumps({"findings": [{"severity": CRITICAL, "kind": "instance", "subject": "dagster",
                                    "message": message}], "critical": 1}) if as_json else f"CRITICAL  {message}")
    return EXIT_UNREACHABLE
