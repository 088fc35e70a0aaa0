"""The Meta assets: ad accounts, the campaign > ad set > ad hierarchy, and daily insights.

Every asset loads one sync per scope (an ad account, or an account-day for insights) through the
warehouse resource, so each scope's rows and its sync-log row commit together. A failing scope is
recorded and the others carry on; the materialization's metadata lists the failed scopes and the
"all scopes loaded" check fails until they recover. A dead token stops everything at once (every
scope would fail the same way), and a run in which every scope failed fails.
"""


from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg

from adpipeline import clock
from adpipeline.config import MetaAccount, SourcesConfig
from adpipeline.conventions import LANDING_KINDS, OWNER
from adpipeline.http import ApiError, ErrorKind, redact
from adpipeline.sources.cursors import NEWEST, window_start
from adpipeline.sources.meta import tables
from adpipeline.sources.meta.client import (
    ACCOUNT_TOTALS_FIELDS,
    MetaClient,
    account_insights_record,
    account_record,
    entity_record,
    insights_record,
)
from adpipeline.sources.meta.partitions import account_today
from adpipeline.sources.meta.readahead import ReadAhead
from adpipeline.sources.meta.resources import MetaResource
from adpipeline.warehouse.loader import LoadResult
from adpipeline.warehouse.resource import WarehouseResource
from adpipeline.warehouse.sync_log import Sync

SOURCE = "meta"
GROUP = "meta"
KINDS = {*LANDING_KINDS, "meta"}
AD_ACCOUNTS = dg.AssetKey(["meta", "ad_accounts"])
CAMPAIGNS = dg.AssetKey(["meta", "campaigns"])
ADSETS = dg.AssetKey(["meta", "adsets"])
ADS = dg.AssetKey(["meta", "ads"])
ADS_INSIGHTS = dg.AssetKey(["meta", "ads_insights"])
ACCOUNT_INSIGHTS = dg.AssetKey(["meta", "account_insights"])
HIERARCHY_KEYS = {"campaigns": CAMPAIGNS, "adsets": ADSETS, "ads": ADS}
# re-read a little before the newest updated_time already loaded: edits in the same second are not lost
INCREMENTAL_OVERLAP = timedelta(minutes=10)


RECOVERY = ("Recovery: get a new short-lived token for the Meta user (Graph API Explorer or the app's login), "
            "then run `adpipeline tokens exchange meta -` and paste it on stdin (it stays out of shell history; "
            "the command exchanges it for a 60-day token, stores and verifies it), and rerun.")


@contextmanager
def fail_fast_on_auth() -> Iterator[None]:
    """A rejected token fails the step at once, as one sentence with the recovery steps (no retry storm)."""
    try:
        yield
    except ApiError as error:
        if error.kind is not ErrorKind.AUTH:
            raise
        where = " ".join(p for p in (error.source, error.scope) if p) or "meta"  # no scope: not "meta None"
        raise dg.Failure(description=f"{where}: {error.message} {RECOVERY}",
                         metadata={"error_code": str(error.code), "error_subcode": str(error.subcode)}) from None


class HierarchyConfig(dg.Config):
    full_refresh: bool = False  # re-list every object (any status) instead of those updated since the last load


class Scopes:
    """One sync per scope; failures are collected (an auth failure is raised: it would repeat everywhere)."""

    def __init__(self, context: dg.AssetExecutionContext, warehouse: WarehouseResource, client: MetaClient | None,
                 entity: str) -> None:
        self.context, self.warehouse, self.client, self.entity = context, warehouse, client, entity
        self.loaded = LoadResult()
        self.succeeded: list[str] = []
        self.failed: dict[str, str] = {}

    def run(self, label: str, account: str, body: Callable[[Sync], None], *, sync_type: str,
            window: tuple[date, date] | None = None, api_scope: str | None = None) -> ApiError | None:
        """Run `body` in the sync of (meta, account, entity, window). Returns the API error that failed it."""
        client, api_scope = self.client, api_scope or label
        try:
            with self.warehouse.sync(
                source=SOURCE, scope=account, entity=self.entity, sync_type=sync_type, window=window,
                run_id=self.context.run.run_id, api_calls=(lambda: client.calls_by_scope[api_scope]) if client else None,
            ) as sync:
                body(sync)
            self.loaded += sync.result
            self.succeeded.append(label)
            return None
        except ApiError as error:
            if error.kind is ErrorKind.AUTH:
                raise
            self._fail(label, str(error))
            return error
        except Exception as error:  # bad data, a concurrent sync...: this scope only
            self._fail(label, f"{type(error).__name__}: {error}")
            return None

    def _fail(self, label: str, message: str) -> None:
        self.failed[label] = redact(message)
        self.context.log.error(f"{SOURCE} {self.entity} {label}: {self.failed[label]}")

    def skip(self, label: str, reason: str) -> None:
        self.failed[label] = f"not attempted: {reason}"

    def metadata(self, result: LoadResult | None = None) -> dict[str, Any]:
        client = self.client
        meta: dict[str, Any] = {
            **(result or self.loaded).as_metadata(),
            "scopes_loaded": len(self.succeeded),
            "failed_scopes": dg.MetadataValue.json(sorted(self.failed)),
            "errors": dg.MetadataValue.json({k: v[:500] for k, v in sorted(self.failed.items())}),
        }
        if client is not None:
            meta.update(api_calls=client.calls, retries=client.retries, throttle_pauses=client.throttle_pauses,
                        throttle_wait_seconds=round(client.throttle_seconds, 1), page_shrinks=client.page_shrinks,
                        async_jobs=client.async_jobs)
        return meta

    def raise_if_nothing_loaded(self, what: str) -> None:
        if self.failed and not self.succeeded:
            first = next(iter(sorted(self.failed.items())))
            raise dg.Failure(description=f"{what}: every scope failed ({len(self.failed)}), e.g. {first[0]}: {first[1]}",
                             metadata=self.metadata())


def _asset_kwargs(description: str, code_version: str) -> dict[str, Any]:
    return {"description": description, "group_name": GROUP, "kinds": KINDS, "owners": [OWNER],
            "code_version": code_version}


def build_assets(config: SourcesConfig, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    accounts = list(config.meta.accounts)
    return [
        _ad_accounts_asset(accounts),
        *(_hierarchy_asset(edge, accounts) for edge in ("campaigns", "adsets", "ads")),
        _insights_asset(accounts, partitions, {a.id: config.meta.purchase_types(a) for a in accounts}),
    ]


# ---- ad accounts -----------------------------------------------------------------------------------------


def _ad_accounts_asset(accounts: Sequence[MetaAccount]) -> dg.AssetsDefinition:
    @dg.asset(key=AD_ACCOUNTS, **_asset_kwargs(
        "Configured Meta ad accounts (adpipeline.yaml), checked against /me/adaccounts: an account the token "
        "cannot see, or whose time zone or currency differ from the config, fails its scope.", "1"))
    def ad_accounts(context: dg.AssetExecutionContext, meta: MetaResource,
                    warehouse: WarehouseResource) -> dg.MaterializeResult:
        with fail_fast_on_auth(), meta.client(warehouse) as client:
            listed = {row.get("id"): row for row in client.ad_accounts()}
            scopes = Scopes(context, warehouse, client, "ad_accounts")
            for account in accounts:
                def body(sync: Sync, account: MetaAccount = account) -> None:
                    row = listed.get(account.id)
                    if row is None:
                        raise ApiError(ErrorKind.PERMISSION, f"{account.id} is configured but this token cannot "
                                       "see it in /me/adaccounts: grant access in Business Manager",
                                       source=SOURCE, scope=account.id)
                    if (row.get("timezone_name"), row.get("currency")) != (account.timezone, account.currency):
                        raise ValueError(
                            f"{account.id}: adpipeline.yaml says {account.timezone}/{account.currency}, Meta says "
                            f"{row.get('timezone_name')}/{row.get('currency')}; fix the config (days and money "
                            "depend on it)")
                    sync.load(tables.AD_ACCOUNTS, [account_record(row)])

                scopes.run(account.id, account.id, body, sync_type="full")  # its one listing call is in the metadata
            scopes.raise_if_nothing_loaded("meta/ad_accounts")
            configured = {a.id for a in accounts}
            unconfigured = sorted(str(k) for k in listed if k not in configured)
            return dg.MaterializeResult(metadata={**scopes.metadata(),
                                                  "visible_not_configured": dg.MetadataValue.json(unconfigured)})

    return ad_accounts


# ---- hierarchy --------------------------------------------------------------------------------------------


def _hierarchy_asset(edge: str, accounts: Sequence[MetaAccount]) -> dg.AssetsDefinition:
    table = tables.HIERARCHY[edge]
    upstream = {"campaigns": AD_ACCOUNTS, "adsets": CAMPAIGNS, "ads": ADSETS}[edge]

    @dg.asset(key=HIERARCHY_KEYS[edge], deps=[upstream], **_asset_kwargs(
        f"Meta {edge} of every configured account, any status (deleted and archived ones are kept with their "
        "status). Incremental on updated_time (cheap, hourly); run with full_refresh to re-list everything.", "1"))
    def hierarchy(context: dg.AssetExecutionContext, config: HierarchyConfig, meta: MetaResource,
                  warehouse: WarehouseResource) -> dg.MaterializeResult:
        with fail_fast_on_auth(), meta.client(warehouse) as client:
            scopes = Scopes(context, warehouse, client, edge)
            for account in accounts:
                def body(sync: Sync, account: MetaAccount = account) -> None:
                    since = None if config.full_refresh else _newest_update(sync, table, account.id, context.log)
                    rows = client.entities(account.id, edge, updated_since=since, scope=f"{account.id} {edge}")
                    sync.load(table, (entity_record(edge, row) for row in rows))

                scopes.run(account.id, account.id, body, sync_type="full" if config.full_refresh else "incremental",
                           api_scope=f"{account.id} {edge}")
            scopes.raise_if_nothing_loaded(f"meta/{edge}")
            return dg.MaterializeResult(metadata={**scopes.metadata(), "full_refresh": config.full_refresh})

    return hierarchy


def _newest_update(sync: Sync, table: tables.Table, account_id: str, log: Any = None) -> datetime | None:
    now = clock.now()
    newest, not_future = sync.conn.execute(
        f"SELECT {NEWEST.format('updated_time')} FROM {table.qualified} WHERE account_id = %s",
        (now, account_id)).fetchone()
    if newest is None:
        return None
    since, _ = window_start(newest, INCREMENTAL_OVERLAP, now, what=f"meta {table.name} {account_id}",
                            not_future=not_future, logger=log)
    return since


# ---- insights ---------------------------------------------------------------------------------------------


def _insights_asset(accounts: Sequence[MetaAccount], partitions: dg.PartitionsDefinition,
                    purchase_types: dict[str, tuple[str, ...]]) -> dg.AssetsDefinition:
    # after meta/ads in the graph: insights rows name ads (the ads_known check), though they never wait for them
    common = {"group_name": GROUP, "kinds": KINDS, "owners": [OWNER], "code_version": "1", "deps": [ADS]}
    specs = [
        dg.AssetSpec(ADS_INSIGHTS, description=(
            "Meta insights per ad and day (level=ad, time_increment=1) in each ad account's own time zone: spend, "
            "impressions, clicks, reach, conversions and purchase value per attribution window (1d_click, "
            "7d_click, 28d_click, 1d_view), currency. Conversions are the first purchase action type present from "
            "the account's ordered list (meta.purchase_action_types in adpipeline.yaml; never a sum of the "
            "overlapping types), named in conversion_action_type. Each (account, day) is replaced whole on every pull, so "
            "restated conversions converge and rows Meta drops disappear."), **common),
        dg.AssetSpec(ACCOUNT_INSIGHTS, description=(
            "Meta insights per ad account and day (level=account): the totals meta/ads_insights is reconciled "
            "against. Loaded in the same transaction as the day's ad rows, so the two are always materialized "
            "together (select both, e.g. `--select meta/ads_insights,meta/account_insights`)."), **common),
    ]

    @dg.multi_asset(specs=specs, name="meta_insights", partitions_def=partitions, can_subset=False,
                    backfill_policy=dg.BackfillPolicy.single_run())
    def insights(context: dg.AssetExecutionContext, meta: MetaResource, warehouse: WarehouseResource):
        days = sorted(date.fromisoformat(key) for key in context.partition_keys)
        now = clock.now()
        todo: list[tuple[MetaAccount, date]] = []
        future: list[str] = []
        for account in accounts:
            today = account_today(account, now)
            for day in days:
                if day > today:
                    future.append(f"{account.id} {day}")  # not started yet in the account's zone: never asked
                else:
                    todo.append((account, day))
        ad_rows, account_rows = LoadResult(), LoadResult()
        with fail_fast_on_auth(), meta.client(warehouse) as client:
            scopes = Scopes(context, warehouse, client, "ads_insights")
            # a reader thread fetches ahead while this thread parses and writes to Postgres
            with ReadAhead(fetch_insights(client, todo), depth=READ_AHEAD_PAGES, name="meta-insights") as pieces:
                for account, day in todo:
                    label = f"{account.id} {day}"
                    first = next(pieces)
                    if first.kind == "skipped":
                        kind = first.error.kind.value if isinstance(first.error, ApiError) else "error"
                        scopes.skip(label, f"{account.id} failed earlier in this run ({kind})")
                        continue
                    loaded: dict[str, LoadResult] = {}
                    stream = ScopeStream(account.id, first, pieces, purchase_types[account.id])

                    def body(sync: Sync, account: MetaAccount = account, day: date = day,
                             stream: ScopeStream = stream, loaded: dict[str, LoadResult] = loaded) -> None:
                        where = {"account_id": account.id, "date": day}
                        # the sync log counts the ad rows; the account totals are a side table
                        loaded["account"] = sync.load(tables.ACCOUNT_INSIGHTS, stream.totals(), replace_scope=where,
                                                      count=False)
                        loaded["ads"] = sync.load(tables.ADS_INSIGHTS, stream.rows(), replace_scope=where)

                    today = account_today(account, now)
                    scopes.run(label, account.id, body, window=(day, day),
                               sync_type="incremental" if day >= today - timedelta(days=1) else "restatement")
                    stream.drain()  # a scope that failed while loading leaves its remaining pages behind
                    if label in scopes.succeeded:  # counted once committed
                        account_rows += loaded["account"]
                        ad_rows += loaded["ads"]
            scopes.raise_if_nothing_loaded("meta/ads_insights")
            shared = {"days": len(days), "not_started_yet": dg.MetadataValue.json(future)}
            yield dg.MaterializeResult(asset_key=ADS_INSIGHTS, metadata={**scopes.metadata(ad_rows), **shared})
            yield dg.MaterializeResult(asset_key=ACCOUNT_INSIGHTS,
                                       metadata={**scopes.metadata(account_rows), **shared})

    return insights


READ_AHEAD_PAGES = 16


@dataclass
class Piece:
    """What the reader thread hands over for one (account, day): its account totals, then pages of ad rows,
    then "end"; or an error; or "skipped" when the account already failed in a way that would repeat."""

    kind: str  # totals | rows | end | error | skipped
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None


def fetch_insights(client: MetaClient, todo: list[tuple[MetaAccount, date]]) -> Iterator[Piece]:
    """Every (account, day) in order, as pieces of raw rows (parsed by the consumer, so this thread is
    back on the network quickly). Runs in the reader thread; errors travel as pieces."""
    blocked: dict[str, ApiError] = {}  # permission or throttling past the budget: the account's other days would fail too
    for account, day in todo:
        if account.id in blocked:
            yield Piece("skipped", error=blocked[account.id])
            continue
        label = f"{account.id} {day}"
        try:
            yield Piece("totals", list(client.insights(account.id, day, day, level="account",
                                                       fields=ACCOUNT_TOTALS_FIELDS, scope=label)))
            page: list[dict[str, Any]] = []
            for row in client.insights(account.id, day, day, scope=label):
                page.append(row)
                if len(page) >= client.page_limit:
                    yield Piece("rows", page)
                    page = []
            yield Piece("rows", page)
            yield Piece("end")
        except ApiError as error:
            yield Piece("error", error=error)
            if error.kind is ErrorKind.AUTH:
                return  # the consumer raises it: every other call would fail the same way
            if error.kind is ErrorKind.PERMISSION or (error.kind is ErrorKind.THROTTLED and error.exhausted):
                blocked[account.id] = error
        except Exception as error:  # a bad answer: this scope only
            yield Piece("error", error=error)


class ScopeStream:
    """The pieces of one (account, day), read from the shared reader as the loader asks for them, parsed
    into records on the way."""

    def __init__(self, account: str, first: Piece, pieces: Iterator[Piece], purchase_types: tuple[str, ...]) -> None:
        self.account = account
        self.purchase_types = purchase_types
        self._pending: Piece | None = first
        self._pieces = pieces
        self._done = False

    def _next(self) -> Piece:
        piece, self._pending = (self._pending or next(self._pieces)), None
        if piece.kind in ("end", "error"):
            self._done = True
        if piece.kind == "error":
            assert piece.error is not None
            raise piece.error
        return piece

    def totals(self) -> list[dict[str, Any]]:
        return [account_insights_record(row, self.account, self.purchase_types) for row in self._next().rows]

    def rows(self) -> Iterator[dict[str, Any]]:
        while (piece := self._next()).kind != "end":
            for row in piece.rows:
                yield insights_record(row, self.account, self.purchase_types)

    def drain(self) -> None:
        while not self._done:
            piece = self._pending or next(self._pieces)
            self._pending = None
            self._done = piece.kind in ("end", "error")
