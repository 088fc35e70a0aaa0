"""dbt selections evaluated on the manifest's dict, without dbt's selection engine.

dagster-dbt evaluates each `dbt_assets(select=...)` with dbt-core's own selector whenever dbt-core is
installed: that imports `dbt.graph` and networkx and builds dbt's graph, about a fifth of our code-location
load, three times. Our assets use two forms only, `tag:<tag>` and a list of resource names, so while they are
built (`manifest_selection()`) those are evaluated here, the way dbt's default (eager) indirect selection does:
the named or tagged nodes plus every test that depends on any of them. Any other selection goes to dagster-dbt.
`tests/test_dbt_wiring.py` holds this equal to dbt's own selector on the project's manifest.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster_dbt import asset_utils

_TERM = re.compile(r"^(tag:)?([A-Za-z_][\w-]*)$")
_NAMED_TYPES = ("model", "seed", "snapshot")


def select_from_manifest(select: str, manifest: Mapping[str, Any]) -> set[str] | None:
    """The unique ids dbt selects for `select` (tags and names, space-separated: a union), or None when the
    selection uses anything else."""
    terms = [_TERM.match(term) for term in select.split()]
    if not terms or not all(terms):
        return None
    tags = {t.group(2) for t in terms if t and t.group(1)}
    names = {t.group(2) for t in terms if t and not t.group(1)}
    nodes: Mapping[str, Mapping[str, Any]] = manifest["nodes"]
    direct = {uid for uid, node in nodes.items() if node["resource_type"] != "test"
              and (tags & set(node.get("tags") or ())
                   or (node["resource_type"] in _NAMED_TYPES and node["name"] in names))}
    direct |= {uid for uid, source in manifest.get("sources", {}).items() if tags & set(source.get("tags") or ())}
    tests = {uid for uid, node in nodes.items() if node["resource_type"] == "test"
             and (tags & set(node.get("tags") or ()) or set((node.get("depends_on") or {}).get("nodes") or ()) & direct)}
    return direct | tests


@contextmanager
def manifest_selection() -> Iterator[None]:
    """While `dbt_assets` definitions are built, dagster-dbt evaluates the selections above here."""
    original = asset_utils.select_unique_ids

    def select_unique_ids(select: str, exclude: str, selector: str, project: Any,
                          manifest_json: Mapping[str, Any]) -> Any:
        selected = None if exclude or selector else select_from_manifest(select, manifest_json)
        if selected is None:
            return original(select=select, exclude=exclude, selector=selector, project=project,
                            manifest_json=manifest_json)
        return selected

    asset_utils.select_unique_ids = select_unique_ids
    try:
        yield
    finally:
        asset_utils.select_unique_ids = original
