"""Links from the Dagster UI to docs/runbooks/: every check to the page of its signal, every asset to the index.

`alerts.runbook_base_url` in adpipeline.yaml when set (a deployed UI's users are not on the code location's
machine); else a file URL of the checkout (or the image's copy of docs/), which works where the code location runs.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from adpipeline.config import get_config
from adpipeline.warehouse.definitions import map_specs

RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks"
RUNBOOK = "runbook"  # the metadata key
DBT_TESTS = "dbt_tests"
INDEX = "README"


def runbook(signal: str) -> dg.UrlMetadataValue:
    base = get_config().alerts.runbook_base_url
    if base:
        return dg.MetadataValue.url(f"{base.rstrip('/')}/{signal}.md")
    return dg.MetadataValue.url((RUNBOOKS / f"{signal}.md").as_uri())


def with_runbooks(defs: dg.Definitions) -> dg.Definitions:
    """Each asset links to the runbook index (its checks link to their own pages)."""
    return map_specs(defs, lambda spec: spec.merge_attributes(metadata={RUNBOOK: runbook(INDEX)}))
