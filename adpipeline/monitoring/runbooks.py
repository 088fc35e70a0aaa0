"""Links from the Dagster UI to docs/runbooks/: every check to the page of its signal, every asset to the index.

A file URL of the checkout (or the image's copy of docs/): the link works wherever the code location runs.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from adpipeline.warehouse.definitions import map_specs

RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks"
RUNBOOK = "runbook"  # the metadata key
DBT_TESTS = "dbt_tests"
INDEX = "README"


def runbook(signal: str) -> dg.UrlMetadataValue:
    return dg.MetadataValue.url((RUNBOOKS / f"{signal}.md").as_uri())


def with_runbooks(defs: dg.Definitions) -> dg.Definitions:
    """Each asset links to the runbook index (its checks link to their own pages)."""
    return map_specs(defs, lambda spec: spec.merge_attributes(metadata={RUNBOOK: runbook(INDEX)}))
