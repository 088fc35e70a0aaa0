"""Warehouse slice: the shared resource every asset and check uses, and what the UI shows of the tables."""

import warnings
from collections.abc import Callable, Iterable

import dagster as dg

from adpipeline.warehouse.loader import Table
from adpipeline.warehouse.resource import WarehouseResource


def build_defs() -> dg.Definitions:
    return dg.Definitions(resources={"warehouse": WarehouseResource()})


def map_specs(defs: dg.Definitions, func: Callable[[dg.AssetSpec], dg.AssetSpec]) -> dg.Definitions:
    # map_asset_specs is marked preview in Dagster 1.13; it is the documented way to apply one policy
    # across many assets, so we accept that and keep the warning out of every definitions load.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*map_(resolved_)?asset_specs.*")
        return defs.map_asset_specs(func=func)


def with_tables(defs: dg.Definitions, tables: Iterable[Table]) -> dg.Definitions:
    """Each landing asset (`meta/ads_insights`) gets its table's name and column schema (`raw_meta.ads_insights`)."""
    by_key = {dg.AssetKey([t.schema.removeprefix("raw_"), t.name]): t for t in tables}

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        table = by_key.get(spec.key)
        return spec.merge_attributes(metadata=table.asset_metadata()) if table else spec

    return map_specs(defs, apply)
