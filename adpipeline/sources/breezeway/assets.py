"""Breezeway assets, one partition per region (see `loads.py` for what a sync does):

    breezeway/properties -> breezeway/reservations -> breezeway/tasks      people, supplies, tags (independent)

Each region is one scope of the shared per-scope runner (`warehouse/scopes.py`): a failing region fails only
its own partition; tasks that loaded for only some properties commit as `partial` and fail the step (the
region's materialization is still recorded). "All regions loaded" reports both until they recover.
"""

from typing import Any

import dagster as dg
from pydantic import Field

from adpipeline.config import SourcesConfig
from adpipeline.conventions import LANDING_KINDS, OWNER
from adpipeline.sources.breezeway.loads import (
    IncrementalSettings,
    load_people,
    load_properties,
    load_reservations,
    load_supplies,
    load_tags,
    load_tasks,
)
from adpipeline.sources.breezeway.resources import BreezewayResource
from adpipeline.warehouse.resource import WarehouseResource

GROUP = "breezeway"
KINDS = {*LANDING_KINDS, "breezeway"}
PROPERTIES_KEY = dg.AssetKey(["breezeway", "properties"])
RESERVATIONS_KEY = dg.AssetKey(["breezeway", "reservations"])
TASKS_KEY = dg.AssetKey(["breezeway", "tasks"])
PEOPLE_KEY = dg.AssetKey(["breezeway", "people"])
SUPPLIES_KEY = dg.AssetKey(["breezeway", "supplies"])
TAGS_KEY = dg.AssetKey(["breezeway", "tags"])


class IncrementalConfig(dg.Config):
    mode: str = Field("auto", description="auto (incremental; full when due or after a failure) | incremental | full")
    overlap_hours: float = Field(6.0, description="re-read updates this far before the newest stored updated_at")
    full_every_days: float = Field(7.0, description="a full reconciliation when the last one is older than this")

    def settings(self) -> IncrementalSettings:
        return IncrementalSettings(self.mode, self.overlap_hours, self.full_every_days)


class ReservationsConfig(IncrementalConfig):
    history_start: str = Field("2010-01-01", description="earliest checkout date a full pass asks for")
    max_property_fetches: int = Field(50, description="unknown properties fetched by id per run (rest flagged)")


def build_assets(config: SourcesConfig) -> list[dg.AssetsDefinition]:
    regions = {r.code: r for r in config.breezeway.regions}
    common: dict[str, Any] = {"partitions_def": dg.StaticPartitionsDefinition(list(regions)), "group_name": GROUP,
                              "kinds": KINDS, "owners": [OWNER]}

    @dg.asset(
        key=PROPERTIES_KEY, code_version="2", **common,
        description="Breezeway properties (homes) of one region, fully re-read each run into "
                    "raw_breezeway.properties; vanished ones get deleted_at. Notes (lockbox codes, Wi-Fi "
                    "passwords) are not stored.",
    )
    def properties(context: dg.AssetExecutionContext, breezeway: BreezewayResource,
                   warehouse: WarehouseResource) -> dg.MaterializeResult:
        return load_properties(context, regions[context.partition_key], breezeway, warehouse)

    @dg.asset(
        key=RESERVATIONS_KEY, deps=[PROPERTIES_KEY], code_version="2", **common,
        description="Breezeway reservations of one region into raw_breezeway.reservations: incremental on "
                    "updated_at with an overlap, past stays included, weekly full reconciliation (vanished "
                    "stays get deleted_at). Access codes only as keyed hashes; guests only as a count; local "
                    "check-in/out times keep their zone and are also stored in UTC.",
    )
    def reservations(context: dg.AssetExecutionContext, config: ReservationsConfig, breezeway: BreezewayResource,
                     warehouse: WarehouseResource) -> dg.MaterializeResult:
        return load_reservations(context, regions[context.partition_key], config.settings(), config.history_start,
                                 config.max_property_fetches, breezeway, warehouse)

    @dg.asset(
        key=TASKS_KEY, deps=[PROPERTIES_KEY, RESERVATIONS_KEY], code_version="1", **common,
        description="Breezeway tasks of one region into raw_breezeway.tasks with child tables task_assignments, "
                    "task_supplies and task_costs: one call per property (the API lists tasks per property), "
                    "incremental on updated_at, weekly full reconciliation (vanished tasks get deleted_at). Money "
                    "parsed with its currency; the API's naive timestamps read in the region's zone.",
    )
    def tasks(context: dg.AssetExecutionContext, config: IncrementalConfig, breezeway: BreezewayResource,
              warehouse: WarehouseResource) -> dg.MaterializeResult:
        return load_tasks(context, regions[context.partition_key], config.settings(), breezeway, warehouse)

    @dg.asset(
        key=PEOPLE_KEY, code_version="1", **common,
        description="Breezeway people (staff) of one region, every status, into raw_breezeway.people; vanished "
                    "ones get deleted_at. Contact details are not stored.",
    )
    def people(context: dg.AssetExecutionContext, breezeway: BreezewayResource,
               warehouse: WarehouseResource) -> dg.MaterializeResult:
        return load_people(context, regions[context.partition_key], breezeway, warehouse)

    @dg.asset(
        key=SUPPLIES_KEY, code_version="1", **common,
        description="Breezeway supply catalogue and stock of one region into raw_breezeway.supplies (unit cost "
                    "with its currency); vanished ones get deleted_at.",
    )
    def supplies(context: dg.AssetExecutionContext, breezeway: BreezewayResource,
                 warehouse: WarehouseResource) -> dg.MaterializeResult:
        return load_supplies(context, regions[context.partition_key], breezeway, warehouse)

    @dg.asset(
        key=TAGS_KEY, code_version="1", **common,
        description="Breezeway task tags of one region into raw_breezeway.tags; vanished ones get deleted_at.",
    )
    def tags(context: dg.AssetExecutionContext, breezeway: BreezewayResource,
             warehouse: WarehouseResource) -> dg.MaterializeResult:
        return load_tags(context, regions[context.partition_key], breezeway, warehouse)

    return [properties, reservations, tasks, people, supplies, tags]
