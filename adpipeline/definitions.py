"""The code location: merges each slice's Definitions; nothing else.

Loading reads one file, the sources config; no network or database work happens at import.
"""

import dagster as dg

from adpipeline.warehouse.definitions import build_defs as warehouse_defs

defs = dg.Definitions.merge(
    warehouse_defs(),
)
