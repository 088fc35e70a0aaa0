"""The Meta assets: ad accounts, the campaign > ad set > ad hierarchy, and daily insights.

Every asset loads one sync per scope (an ad account; for insights an account's window of consecutive days,
fetched as one time_range and committed in one transaction, each day with its own sync-log row) through the
shared per-scope runner (`warehouse/scopes.py`), so each scope's rows and its sync-log rows commit together.
Insights windows of different accounts run in parallel (MetaResource.concurrency, concurrency_per_account). A
failing scope is listed and the others carry on; their materialization is recorded, and the step then
fails naming the failed scopes and the action (the "all scopes loaded" check fails until they recover).
A dead token stops everything at once (every scope would fail the same way).
"""


import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg

from adpipeline import clock
from adpipeline.config import MetaAccount, SourcesConfig
from adpipeline.conventions import LANDING_KINDS, OWNER
from adpipeline.http import ApiError, ErrorKind
from adpipeline.http.malloc import return_large_blocks
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
from adpipeline.warehouse.scopes import ScopeRunner
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
ACTION = ("fix what each error names (access in Business Manager, the account's adpipeline.yaml entry, Meta's "
          "status or rate limit), then rerun: for insights the failed days' partitions; the healthy scopes need "
          "nothing.")


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


def _is_auth(error: BaseException) -> bool:
    return isinstance(error, ApiError) and error.kind is ErrorKind.AUTH  # would repeat in every scope


def _runner(context: dg.AssetExecutionContext, warehouse: WarehouseResource, entity: str) -> ScopeRunner:
    return ScopeRunner(context, warehouse, source=SOURCE, entity=entity, action=ACTION, fatal=_is_auth)


def _calls(client: MetaClient, api_scope: str) -> Callable[[], int]:
    return lambda: client.calls_by_scope[api_scope]


def _client_metadata(client: MetaClient) -> dict[str, Any]:
    return {"api_calls": client.calls, "retries": client.retries, "throttle_pauses": client.throttle_pauses,
            "throttle_wait_seconds": round(client.throttle_seconds, 1), "page_shrinks": client.page_shrinks,
            "async_jobs": client.async_jobs}


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
            scopes = _runner(context, warehouse, "ad_accounts")
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

                scopes.run(account.id, body, scope=account.id, sync_type="full",  # its one listing call: metadata
                           api_calls=_calls(client, account.id))
            configured = {a.id for a in accounts}
            unconfigured = sorted(str(k) for k in listed if k not in configured)
            return scopes.finish([dg.MaterializeResult(metadata={
                **scopes.metadata(), **_client_metadata(client),
                "visible_not_configured": dg.MetadataValue.json(unconfigured)})])[0]

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
            scopes = _runner(context, warehouse, edge)
            for account in accounts:
                def body(sync: Sync, account: MetaAccount = account) -> None:
                    since = None if config.full_refresh else _newest_update(sync, table, account.id, context.log)
                    rows = client.entities(account.id, edge, updated_since=since, scope=f"{account.id} {edge}")
                    sync.load(table, (entity_record(edge, row) for row in rows))

                scopes.run(account.id, body, scope=account.id,
                           sync_type="full" if config.full_refresh else "incremental",
                           api_calls=_calls(client, f"{account.id} {edge}"))
            return scopes.finish([dg.MaterializeResult(metadata={
                **scopes.metadata(), **_client_metadata(client), "full_refresh": config.full_refresh})])[0]

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
        windows: list[tuple[MetaAccount, list[date]]] = []
        future: list[str] = []
        for account in accounts:
            today = account_today(account, now)
            future += [f"{account.id} {day}" for day in days if day > today]  # not started yet there: never asked
            windows += [(account, window) for window in day_windows([d for d in days if d <= today], meta.window_days)]
        # before the window threads decode pages: freed page bodies go back to the OS, not into their heaps
        return_large_blocks()
        with fail_fast_on_auth(), meta.client(warehouse) as client:
            scopes = _runner(context, warehouse, "ads_insights")
            loaded = {"ads": LoadResult(), "account": LoadResult()}
            blocked: dict[str, ApiError] = {}  # permission or throttling past the budget: the account's other days would fail too
            per_account = {a.id: threading.BoundedSemaphore(max(1, meta.concurrency_per_account)) for a in accounts}

            def run(account: MetaAccount, window: list[date]) -> WindowOutcome | None:
                with per_account[account.id]:
                    if account.id in blocked:  # recorded: each day gets its failed sync-log row saying why
                        scopes.skip(blocked[account.id], scope=account.id,
                                    days={day: sync_type(day, account, now) for day in window})
                        return None
                    outcome = load_window(scopes, client, account, window, purchase_types[account.id], now)
                    error = outcome.error
                    if error is not None and (error.kind is ErrorKind.PERMISSION
                                              or (error.kind is ErrorKind.THROTTLED and error.exhausted)):
                        blocked[account.id] = error
                    return outcome

            # windows of different accounts side by side (the client keeps the calls within the usage limits and
            # `concurrency` in flight); more windows than call slots, so that while one window opens or commits
            # its transaction, another's calls hold the slot
            with in_parallel(WINDOWS_PER_CALL_SLOT * max(1, meta.concurrency)) as submit:
                for outcome in submit(run, interleaved(windows)):
                    if outcome is not None:
                        loaded["ads"] += outcome.ads
                        loaded["account"] += outcome.account
            shared = {"days": len(days), "not_started_yet": dg.MetadataValue.json(future), **_client_metadata(client)}
            # when some scopes failed, the days with a committed scope are recorded as materialized
            committed = sorted({label.split(" ")[1] for label in scopes.succeeded})
            yield from scopes.finish([
                dg.MaterializeResult(asset_key=ADS_INSIGHTS, metadata={**scopes.metadata(loaded["ads"]), **shared}),
                dg.MaterializeResult(asset_key=ACCOUNT_INSIGHTS,
                                     metadata={**scopes.metadata(loaded["account"]), **shared}),
            ], committed)

    return insights


# pages queued per window: enough to overlap fetching with loading; with 2 windows per call slot a deeper queue
# only holds more rows in memory (a page is up to page_limit parsed rows)
READ_AHEAD_PAGES = 4
WINDOWS_PER_CALL_SLOT = 2


def interleaved(windows: list[tuple[MetaAccount, list[date]]]) -> list[tuple[MetaAccount, list[date]]]:
    """Round robin over accounts (each account's windows in order), so parallel workers spread across them."""
    by_account: dict[str, list[tuple[MetaAccount, list[date]]]] = {}
    for item in windows:
        by_account.setdefault(item[0].id, []).append(item)
    rounds = itertools.zip_longest(*by_account.values())
    return [item for batch in rounds for item in batch if item is not None]


@contextmanager
def in_parallel(workers: int) -> Iterator[Callable[..., Iterator[Any]]]:
    """`submit(fn, items)` runs fn(*item) on up to `workers` threads and yields the results in order; the
    first exception (an auth failure) cancels what has not started and propagates."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="meta-window")

    def submit(fn: Callable[..., Any], items: Sequence[tuple]) -> Iterator[Any]:
        futures = [pool.submit(fn, *item) for item in items]
        for future in futures:
            yield future.result()

    try:
        yield submit
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def day_windows(days: Sequence[date], size: int) -> list[list[date]]:
    """Sorted days cut into runs of consecutive days, each at most `size` long: one time_range each."""
    windows: list[list[date]] = []
    for day in sorted(days):
        if windows and day == windows[-1][-1] + timedelta(days=1) and len(windows[-1]) < size:
            windows[-1].append(day)
        else:
            windows.append([day])
    return windows


@dataclass
class WindowOutcome:
    """What one account window left: the API error that failed it (if any), and the rows it committed."""

    error: ApiError | None = None
    ads: LoadResult = field(default_factory=LoadResult)
    account: LoadResult = field(default_factory=LoadResult)


def sync_type(day: date, account: MetaAccount, now: datetime) -> str:
    """Today and yesterday in the account's time zone are still accruing; older days are restated."""
    return "incremental" if day >= account_today(account, now) - timedelta(days=1) else "restatement"


def load_window(scopes: ScopeRunner, client: MetaClient, account: MetaAccount, days: list[date],
                purchase_types: tuple[str, ...], now: datetime) -> WindowOutcome:
    """One account's consecutive days: fetched as one time_range (account totals once, ad rows paged, or an
    async report for a long window) and committed in ONE transaction, each (account, day) with its own
    sync-log row and replaced whole. Every day's outcome lands in `scopes` (`"{account} {day}"` succeeded or
    failed)."""
    first, last = days[0], days[-1]
    api_scope = f"{account.id} {first}..{last}"
    where = {"account_id": account.id, "date": (first, last)}
    sync_types = {day: sync_type(day, account, now) for day in days}
    loaded = WindowOutcome()

    def pages() -> Iterator[list[dict[str, Any]]]:
        yield list(client.insights(account.id, first, last, level="account", fields=ACCOUNT_TOTALS_FIELDS,
                                   scope=api_scope))
        rows = client.insights(account.id, first, last, scope=api_scope)
        while page := list(itertools.islice(rows, client.page_limit)):
            yield page

    def body(sync: Sync) -> None:
        # a reader thread fetches ahead while this thread parses and writes to Postgres
        with ReadAhead(pages(), depth=READ_AHEAD_PAGES, name=f"meta-insights {account.id}") as fetched:
            totals = [account_insights_record(row, account.id, purchase_types) for row in next(fetched)]
            # the sync log counts the ad rows; the account totals are a side table
            loaded.account = sync.load(tables.ACCOUNT_INSIGHTS, totals, replace_scope=where, count=False)
            loaded.ads = sync.load(tables.ADS_INSIGHTS, (insights_record(row, account.id, purchase_types)
                                                         for page in fetched for row in page), replace_scope=where)

    if scopes.run(api_scope, body, scope=account.id, api_calls=_calls(client, api_scope), days=sync_types) is None:
        error = scopes.errors.get(f"{account.id} {first}")  # nothing committed
        return WindowOutcome(error=error if isinstance(error, ApiError) else None)
    return loaded
