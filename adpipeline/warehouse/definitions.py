"""Warehouse slice: the shared resource every asset and check uses."""

import dagster as dg

from adpipeline.warehouse.resource import WarehouseResource


def build_defs() -> dg.Definitions:
    return dg.Definitions(resources={"warehouse": WarehouseResource()})
