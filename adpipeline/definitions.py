"""The code location: merges each slice's Definitions; nothing else.

Loading reads one file, the sources config; no network or database work happens at import.
"""

import dagster as dg

from adpipeline.config import get_config
from adpipeline.conventions import PER_RUN_EXECUTOR
from adpipeline.monitoring.definitions import build_defs as monitoring_defs
from adpipeline.monitoring.freshness import apply_freshness
from adpipeline.monitoring.runbooks import with_runbooks
from adpipeline.sources.breezeway.definitions import build_defs as breezeway_defs
from adpipeline.sources.ga4.definitions import build_defs as ga4_defs
from adpipeline.sources.meta.definitions import build_defs as meta_defs
from adpipeline.transform.definitions import build_defs as transform_defs
from adpipeline.warehouse.definitions import build_defs as warehouse_defs


def _merge() -> dg.Definitions:
    # Built in a function: a second module-level Definitions would make `dagster -m` ambiguous.
    config = get_config()
    sources = dg.Definitions.merge(
        warehouse_defs(),
        breezeway_defs(),
        ga4_defs(config),
        meta_defs(config),
        transform_defs(config),
    )
    # monitoring watches the other slices; freshness policies and runbook links apply to every asset in one
    # place. A run that is no job of ours (UI selection, `dagster asset materialize`) runs in one process unless
    # its plan has independent heavy steps (conventions.PER_RUN_EXECUTOR).
    merged = dg.Definitions.merge(sources, monitoring_defs(sources, config), dg.Definitions(executor=PER_RUN_EXECUTOR))
    return with_runbooks(apply_freshness(merged, config))


defs = _merge()
