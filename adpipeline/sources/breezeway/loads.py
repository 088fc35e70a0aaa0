"""One sync of one (region, entity): API -> warehouse through the shared sync log and loader.

Every load is the region's one scope in the shared per-scope runner (`warehouse/scopes.py`): its rows and
its sync-log row commit together, or the sync is marked failed and the step fails with one sentence naming
region and action. Tasks whose properties partly failed commit the rest as a `partial` sync and fail the step. Full passes reconcile: rows of the region that the pass did not see get
`deleted_at` (never dropped), counted as `records_deleted` in the sync log.

Reservations are incremental on `updated_at` (from the newest `updated_at` already stored, minus an
overlap) with an explicit checkout window that reaches into the past: the API's default listing only
has stays with checkout >= today, so past stays would silently stop updating. Tasks can only be listed
per property, so every run makes one call per property (several in flight) and nothing else per
property; incremental runs ask only for tasks updated since the cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql

from adpipeline import clock
from adpipeline.config import BreezewayRegion
from adpipeline.http import ApiError, ErrorKind
from adpipeline.sources.breezeway.client import BreezewayClient
from adpipeline.sources.breezeway.resources import BreezewayResource
from adpipeline.sources.breezeway.tables import (
    PEOPLE,
    PROPERTIES,
    RESERVATIONS,
    SUPPLIES,
    TAGS,
    TASK_CHILDREN,
    TASKS,
    person_row,
    property_row,
    reservation_row,
    supply_row,
    tag_row,
    task_rows,
)
from adpipeline.sources.cursors import NEWEST, window_start
from adpipeline.warehouse.loader import LoadResult, Table
from adpipeline.warehouse.resource import WarehouseResource
from adpipeline.warehouse.scopes import ScopeRunner
from adpipeline.warehouse.sync_log import Sync

SOURCE = "breezeway"
ACTION = ("fix what the error names (credentials, permissions, the API's status), then rerun the region's "
          "partition; after a failed or partial run the next pass is full, so nothing missed is skipped.")


@dataclass(frozen=True)
class IncrementalSettings:
    mode: str = "auto"  # auto | incremental | full
    overlap_hours: float = 6.0
    full_every_days: float = 7.0


def choose_sync_type(mode: str, cursor: datetime | None, last_full: datetime | None, now: datetime,
                     full_every: timedelta, last_attempt_failed: bool = False) -> str:
    if mode not in ("auto", "incremental", "full"):
        raise ValueError(f"mode must be auto, incremental or full, not {mode!r}")
    if mode == "full" or cursor is None:
        return "full"  # nothing stored yet: there is nothing to be incremental from
    if mode == "incremental":
        return "incremental"
    if last_attempt_failed:
        return "full"  # a partial or failed run must not move the cursor past what it missed
    return "full" if last_full is None or now - last_full >= full_every else "incremental"


def mark_deleted(conn: psycopg.Connection, table: Table, region: str, seen: Collection[int],
                 where: sql.Composable | None = None, params: tuple[Any, ...] = ()) -> int:
    """Rows of the region (within `where`) that a full pass did not see: deleted upstream, as of now."""
    return len(marked_deleted(conn, table, region, seen, where, params))


def marked_deleted(conn: psycopg.Connection, table: Table, region: str, seen: Collection[int],
                   where: sql.Composable | None = None, params: tuple[Any, ...] = ()) -> list[int]:
    """`mark_deleted`, returning the ids it marked."""
    extra = sql.SQL(" AND ") + where if where is not None else sql.SQL("")
    statement = sql.SQL("UPDATE {t} SET deleted_at = %s WHERE region_code = %s AND deleted_at IS NULL"
                        " AND NOT (id = ANY(%s)){extra} RETURNING id").format(t=table.ident, extra=extra)
    return [i for (i,) in conn.execute(statement, (clock.now(), region, list(seen), *params)).fetchall()]


def mark_children_deleted(conn: psycopg.Connection, region: str, property_ids: list[int]) -> dict[str, int]:
    """A property deleted upstream takes its reservations and tasks with it, in the same reconciliation
    (the reservation and task listings no longer show them, so their own passes could never tell)."""
    if not property_ids:
        return {}
    return {table.name: conn.execute(  # marked as of the property's own deletion
        sql.SQL("UPDATE {t} c SET deleted_at = p.deleted_at FROM {p} p WHERE p.region_code = c.region_code"
                " AND p.id = c.property_id AND c.region_code = %s AND c.property_id = ANY(%s)"
                " AND c.deleted_at IS NULL").format(t=table.ident, p=PROPERTIES.ident),
        (region, property_ids)).rowcount
        for table in (RESERVATIONS, TASKS)}


# ---- shared plumbing -----------------------------------------------------------------------------


def _load(context: dg.AssetExecutionContext, region: BreezewayRegion, entity: str, sync_type: str,
          breezeway: BreezewayResource, warehouse: WarehouseResource,
          body: Callable[[BreezewayClient, Sync], None], metadata: Callable[[], dict[str, Any]]) -> dg.MaterializeResult:
    """The region's one scope through the shared runner; `metadata` is read once the sync has finished."""
    runner = ScopeRunner(context, warehouse, source=SOURCE, entity=entity, action=ACTION)
    with breezeway.client(region, warehouse.token_store()) as client:
        runner.run(region.code, lambda sync: body(client, sync), scope=region.code, sync_type=sync_type,
                   api_calls=lambda: client.calls)
    result = dg.MaterializeResult(metadata={"region": region.code, "sync_type": sync_type, **runner.metadata(),
                                            **_call_metadata(client), **metadata()})
    return runner.finish([result], [region.code])[0]


def _call_metadata(client: BreezewayClient) -> dict[str, Any]:
    assert client.auth is not None
    return {
        "api_calls": client.calls,
        "api_calls_by_entity": dg.MetadataValue.json(client.api_calls_by_entity()),
        "auth_calls": dg.MetadataValue.json(dict(client.auth.calls)),
        "reauthentications": client.reauthentications,
        "retries": client.retries,
    }


def _sync_state(conn: psycopg.Connection, table: Table, region: str, entity: str, now: datetime
                ) -> tuple[datetime | None, datetime | None, datetime | None, bool]:
    """(newest stored updated_at, the newest not in the future, last successful full sync, whether the
    latest attempt failed)."""
    cursor, not_future = conn.execute(
        sql.SQL("SELECT " + NEWEST.format("updated_at") + " FROM {t} WHERE region_code = %s").format(t=table.ident),
        (now, region)).fetchone()
    last_full = conn.execute(
        "SELECT max(finished_at) FROM ops.etl_sync_log WHERE source = %s AND scope = %s AND entity = %s"
        " AND sync_type = 'full' AND status = 'success'", (SOURCE, region, entity)).fetchone()[0]
    latest = conn.execute(
        "SELECT status FROM ops.etl_sync_log WHERE source = %s AND scope = %s AND entity = %s AND status <> 'running'"
        " ORDER BY started_at DESC, id DESC LIMIT 1", (SOURCE, region, entity)).fetchone()
    return cursor, not_future, last_full, bool(latest and latest[0] in ("failed", "partial"))


# ---- full listings: properties, people, supplies, tags -------------------------------------------


def load_listing(context: dg.AssetExecutionContext, region: BreezewayRegion, entity: str, table: Table,
                 fetch: Callable[[BreezewayClient], Iterator[dict[str, Any]]], breezeway: BreezewayResource,
                 warehouse: WarehouseResource,
                 cascade: Callable[[psycopg.Connection, str, list[int]], dict[str, int]] | None = None,
                 ) -> dg.MaterializeResult:
    """A small entity listed in full every run: upsert, then mark what vanished upstream (and, through
    `cascade`, what belongs to it), in the same transaction."""
    seen: set[int] = set()
    children: dict[str, int] = {}

    def rows(client: BreezewayClient) -> Iterator[dict[str, Any]]:
        for row in fetch(client):
            seen.add(row["id"])
            yield row

    def body(client: BreezewayClient, sync: Sync) -> None:
        sync.load(table, rows(client))
        gone = marked_deleted(sync.conn, table, region.code, seen)
        sync.result.deleted += len(gone)
        if cascade is not None:
            children.update(cascade(sync.conn, region.code, gone))

    return _load(context, region, entity, "full", breezeway, warehouse, body, lambda: (
        {"children_marked_deleted": dg.MetadataValue.json(children)} if cascade is not None else {}))


def load_properties(context: dg.AssetExecutionContext, region: BreezewayRegion, breezeway: BreezewayResource,
                    warehouse: WarehouseResource) -> dg.MaterializeResult:
    return load_listing(context, region, "properties", PROPERTIES,
                        lambda c: (property_row(region, r) for r in c.properties()), breezeway, warehouse,
                        cascade=mark_children_deleted)


def load_people(context: dg.AssetExecutionContext, region: BreezewayRegion, breezeway: BreezewayResource,
                warehouse: WarehouseResource) -> dg.MaterializeResult:
    return load_listing(context, region, "people", PEOPLE,
                        lambda c: (person_row(region, r, s) for s, r in c.people()), breezeway, warehouse)


def load_supplies(context: dg.AssetExecutionContext, region: BreezewayRegion, breezeway: BreezewayResource,
                  warehouse: WarehouseResource) -> dg.MaterializeResult:
    return load_listing(context, region, "supplies", SUPPLIES,
                        lambda c: (supply_row(region, r) for r in c.supplies()), breezeway, warehouse)


def load_tags(context: dg.AssetExecutionContext, region: BreezewayRegion, breezeway: BreezewayResource,
              warehouse: WarehouseResource) -> dg.MaterializeResult:
    return load_listing(context, region, "tags", TAGS, lambda c: (tag_row(region, r) for r in c.tags()),
                        breezeway, warehouse)


# ---- reservations --------------------------------------------------------------------------------


def unknown_properties(conn: psycopg.Connection, region: str) -> list[int]:
    """Property ids that the region's reservations reference but the warehouse does not have."""
    rows = conn.execute(
        "SELECT DISTINCT r.property_id FROM raw_breezeway.reservations r WHERE r.region_code = %s"
        " AND r.property_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM raw_breezeway.properties p"
        " WHERE p.region_code = r.region_code AND p.id = r.property_id) ORDER BY 1", (region,)).fetchall()
    return [r[0] for r in rows]


def _fetch_properties(client: BreezewayClient, property_ids: list[int]) -> Iterator[dict[str, Any]]:
    """The properties the API still has; one it cannot give (404, or failing) stays flagged."""
    for property_id in property_ids:
        try:
            raw = client.property(property_id)
        except ApiError as exc:
            if exc.kind is ErrorKind.AUTH:
                raise
            continue
        if raw is not None:
            yield raw


def load_reservations(context: dg.AssetExecutionContext, region: BreezewayRegion, settings: IncrementalSettings,
                      history_start: str, max_property_fetches: int, breezeway: BreezewayResource,
                      warehouse: WarehouseResource) -> dg.MaterializeResult:
    log = context.log
    store = warehouse.token_store()
    now = clock.now()
    with warehouse.connection() as conn:
        cursor, not_future, last_full, failed_last = _sync_state(conn, RESERVATIONS, region.code, "reservations", now)
    sync_type = choose_sync_type(settings.mode, cursor, last_full, now,
                                 timedelta(days=settings.full_every_days), failed_last)
    params: dict[str, Any] = {"checkout_date_ge": history_start}  # explicit: never the API's default
    since = future_cursor = None
    if sync_type == "incremental":
        assert cursor is not None
        since, future_cursor = window_start(cursor, timedelta(hours=settings.overlap_hours), now,
                                            what=f"breezeway {region.code} reservations", not_future=not_future,
                                            logger=log)
        params["updated_at_ge"] = since.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    seen: set[int] = set()

    def rows(client: BreezewayClient) -> Iterator[dict[str, Any]]:
        for raw in client.reservations(params):
            row = reservation_row(region, raw, store.keyring.fingerprint)
            seen.add(row["id"])
            yield row

    fetched = LoadResult()
    flagged: list[int] = []

    def body(client: BreezewayClient, sync: Sync) -> None:
        nonlocal fetched
        sync.load(RESERVATIONS, rows(client))
        if sync_type == "full":  # stays inside the listed window that the API no longer has
            sync.result.deleted += mark_deleted(sync.conn, RESERVATIONS, region.code, seen,
                                                sql.SQL("checkout_date >= %s"), (history_start,))
        # a property the warehouse does not know is fetched by id, or flagged: never dropped
        unknown = unknown_properties(sync.conn, region.code)
        found = [property_row(region, raw) for raw in _fetch_properties(client, unknown[:max_property_fetches])]
        if found:
            fetched = sync.load(PROPERTIES, found, count=False)
        found_ids = {row["id"] for row in found}
        flagged[:] = [p for p in unknown if p not in found_ids]
        if flagged:
            log.warning(f"breezeway {region.code}: {len(flagged)} reservation propert(ies) unknown upstream and "
                        f"here: {flagged[:20]}; the reservations are kept and the property_known check fails")

    return _load(context, region, "reservations", sync_type, breezeway, warehouse, body, lambda: {
        "updated_since": since.isoformat() if since else None,
        "future_cursor_clamped": future_cursor,
        "properties_fetched": fetched.processed,
        "unknown_property_ids": dg.MetadataValue.json(flagged),
    })


# ---- tasks ---------------------------------------------------------------------------------------


def load_tasks(context: dg.AssetExecutionContext, region: BreezewayRegion, settings: IncrementalSettings,
               breezeway: BreezewayResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    log = context.log
    now = clock.now()
    with warehouse.connection() as conn:
        cursor, not_future, last_full, failed_last = _sync_state(conn, TASKS, region.code, "tasks", now)
        property_ids = [r[0] for r in conn.execute(
            "SELECT id FROM raw_breezeway.properties WHERE region_code = %s AND deleted_at IS NULL ORDER BY id",
            (region.code,)).fetchall()]
    sync_type = choose_sync_type(settings.mode, cursor, last_full, now, timedelta(days=settings.full_every_days),
                                 failed_last)
    params: dict[str, Any] = {}
    future_cursor = None
    if sync_type == "incremental":
        assert cursor is not None
        since, future_cursor = window_start(cursor, timedelta(hours=settings.overlap_hours), now,
                                            what=f"breezeway {region.code} tasks", not_future=not_future, logger=log)
        # day ranges "YYYY-MM-DD,YYYY-MM-DD" (inclusive): widened by a day each side for zone ambiguity
        start = since.astimezone(timezone.utc).date() - timedelta(days=1)
        params["updated_at"] = f"{start.isoformat()},{(now.date() + timedelta(days=1)).isoformat()}"
    failed: dict[int, str] = {}
    gone: list[int] = []
    seen: set[int] = set()
    children: dict[str, list[dict[str, Any]]] = {t.name: [] for t in TASK_CHILDREN}

    def rows(client: BreezewayClient) -> Iterator[dict[str, Any]]:
        for property_id, result in client.tasks_by_property(property_ids, params):
            if result is None:
                gone.append(property_id)
            elif isinstance(result, ApiError):
                failed[property_id] = result.describe()
            else:
                for raw in result:
                    row, kids = task_rows(region, raw)
                    seen.add(row["id"])
                    for name, items in kids.items():
                        children[name].extend(items)
                    yield row

    child_counts: dict[str, int] = {}

    def body(client: BreezewayClient, sync: Sync) -> None:
        sync.load(TASKS, rows(client))
        for table in TASK_CHILDREN:  # a reloaded task's children are replaced as a whole
            sync.conn.execute(sql.SQL("DELETE FROM {t} WHERE region_code = %s AND task_id = ANY(%s)")
                              .format(t=table.ident), (region.code, list(seen)))
            child_counts[table.name] = sync.load(table, children[table.name], count=False).processed
        if sync_type == "full":  # only within properties that answered: never guess for the others
            answered = [p for p in property_ids if p not in failed and p not in gone]
            sync.result.deleted += mark_deleted(sync.conn, TASKS, region.code, seen,
                                                sql.SQL("property_id = ANY(%s)"), (answered,))
        if failed:  # the others' tasks commit; the sync is `partial` and the step fails naming these
            sample = "; ".join(f"{p}: {m}" for p, m in list(failed.items())[:3])
            sync.partial = (f"tasks of {len(failed)} of {len(property_ids)} properties failed "
                            f"(properties {sorted(failed)[:20]}; {sample}); the other properties' tasks were loaded")

    return _load(context, region, "tasks", sync_type, breezeway, warehouse, body, lambda: {
        "updated_range": params.get("updated_at"),
        "future_cursor_clamped": future_cursor,
        "properties": len(property_ids),
        **{f"{name}_rows": n for name, n in child_counts.items()},
        "failed_properties": dg.MetadataValue.json(sorted(failed)),
        "properties_gone_upstream": dg.MetadataValue.json(gone),
    })
