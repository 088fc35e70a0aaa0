"""What the 15-minute checks-only job evaluates, as a snapshot (as dagster-open-platform snapshots its
definitions): a check added to or dropped from the job shows up as a diff in review.

Update after an intended change: ADPIPELINE_UPDATE_SNAPSHOTS=1 pytest tests/test_checks_job_snapshot.py
"""

from __future__ import annotations

import os
from pathlib import Path

from adpipeline.monitoring.checks import SCHEDULED

SNAPSHOT = Path(__file__).parent / "snapshots" / "monitoring_checks_job.txt"


def test_the_checks_only_job_evaluates_exactly_the_scheduled_checks() -> None:
    from adpipeline.definitions import defs

    graph = defs.resolve_job_def("monitoring_checks_job").asset_layer.asset_graph
    in_job = sorted(k.to_user_string() for k in graph.asset_check_keys)
    declared = sorted(spec.key.to_user_string() for checks in defs.asset_checks for spec in checks.check_specs
                      if spec.metadata.get(SCHEDULED))
    assert in_job == declared  # selected by the declared marker, nothing else
    assert "breezeway/reservations:region_token_health" in in_job  # the one the name-prefix rule missed
    assert not [k for k in in_job if k.startswith(("dbt", "marts", "staging"))]
    if os.environ.get("ADPIPELINE_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text("\n".join(in_job) + "\n")
    assert in_job == SNAPSHOT.read_text().split(), f"the checks-only job changed; see {SNAPSHOT} (docstring)"
