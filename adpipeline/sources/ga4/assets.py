"""GA4 report assets: one per declared report, partitioned by day x property.

Partitions: the `date` dimension is a calendar day as GA4 reports it, i.e. in each property's own time zone
(GA4's `date` dimension cannot be shifted to another zone, and one MultiPartitionsDefinition has a single
daily dimension for all properties). Which days exist follows the reporting zone (America/Jamaica), with
today included (`end_offset=1`) so the intraday pull has a partition; a day that has not started yet in a
property's zone simply loads no rows.

Each (property, day) is its own scope of the shared per-scope runner (`warehouse/scopes.py`): the day's rows
replace that scope in one transaction with its sync-log row, so a re-pulled (restated) day converges and rows
GA4 dropped disappear. A property that fails does not stop the others in the same run; the loaded partitions
are recorded as materialized and the step then fails naming the failed ones and the action.
"""


from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from adpipeline import clock
from adpipeline.config import Ga4Property, SourcesConfig
from adpipeline.conventions import LANDING_KINDS, OWNER
from adpipeline.sources.ga4.auth import CredentialsError
from adpipeline.sources.ga4.client import Ga4Client, QuotaState
from adpipeline.sources.ga4.reports import REPORT_METADATA, Report, ReportSummary, metadata_row
from adpipeline.sources.ga4.resources import Ga4Resource
from adpipeline.warehouse.loader import LoadError, LoadResult, ensure_table, load
from adpipeline.warehouse.resource import WarehouseResource
from adpipeline.warehouse.scopes import ScopeRunner
from adpipeline.warehouse.sync_log import Sync

SOURCE = "ga4"
ACTION = ("fix what each error names (the property's access for the credentials, GA4_CREDENTIALS, the quota), "
          "then rerun the failed (day, property) partitions; the loaded ones need nothing.")
DATE, PROPERTY = "date", "property"


def ga4_partitions(config: SourcesConfig) -> dg.MultiPartitionsDefinition:
    # the first day is ga4.history_start in adpipeline.yaml: moving it back makes older days backfillable
    return dg.MultiPartitionsDefinition({
        DATE: dg.DailyPartitionsDefinition(start_date=config.ga4.history_start.isoformat(),
                                           timezone=config.reporting_timezone, end_offset=1),
        PROPERTY: dg.StaticPartitionsDefinition([p.id for p in config.ga4.properties]),
    })


def restatement_partition_keys(config: SourcesConfig, now: datetime | None = None) -> list[dg.MultiPartitionKey]:
    """The partitions a scheduled pull re-runs: per property, its today and the `restatement_days` before
    (in the property's zone), limited to partitions that exist."""
    now = now or clock.now()
    existing = set(ga4_partitions(config).get_partitions_def_for_dimension(DATE).get_partition_keys(current_time=now))
    keys = []
    for prop in config.ga4.properties:
        today = now.astimezone(ZoneInfo(prop.timezone)).date()
        for back in range(config.ga4.restatement_days, -1, -1):
            day = (today - timedelta(days=back)).isoformat()
            if day in existing:
                keys.append(dg.MultiPartitionKey({DATE: day, PROPERTY: prop.id}))
    return keys


@dataclass
class ScopeResult:
    property_id: str
    day: date
    sync_type: str
    load: LoadResult
    summary: ReportSummary
    api_calls: int


def pull_report_day(
    *,
    runner: ScopeRunner,
    client: Ga4Client,
    report: Report,
    prop: Ga4Property,
    day: date,
    restatement_days: int,
    page_size: int,
) -> ScopeResult | None:
    """One (report, property, day): pages stream into the table, replacing the scope, with the sync-log row.
    None when it failed (the runner lists it)."""
    scope = f"properties/{prop.id}"
    today = client.now().astimezone(ZoneInfo(prop.timezone)).date()
    sync_type = "restatement" if day >= today - timedelta(days=restatement_days) else "full"
    summary = ReportSummary(currency=prop.currency)
    before = client.calls_by_scope[scope]

    def calls() -> int:
        return client.calls_by_scope[scope] - before

    def body(sync: Sync) -> None:
        pages = client.run_report(prop.id, report.request(day, page_size))
        rows = report.rows(pages, property_id=prop.id, day=day, summary=summary, scope=scope)
        sync.load(report.table, rows, replace_scope={"property_id": prop.id, "report_date": day})
        # same transaction, but not counted as the report's records in the sync log
        load(sync.conn, REPORT_METADATA, [metadata_row(report, prop.id, day, summary, client.now())])

    sync = runner.run(f"{prop.id} {day}", body, scope=prop.id, sync_type=sync_type, window=(day, day), api_calls=calls)
    return ScopeResult(prop.id, day, sync_type, sync.result, summary, calls()) if sync else None


def _scope_metadata(result: ScopeResult, prop: Ga4Property, tokens_per_day: int) -> dict[str, Any]:
    s = result.summary
    quota = QuotaState.from_json(s.quota)
    meta: dict[str, Any] = {
        "sync_type": result.sync_type,
        "report_rows": s.rows,
        "other_rows": s.other_rows,
        "data_loss_from_other_row": s.data_loss_from_other_row,
        "other_share_of_first_metric": float(s.other_share),
        "currency": s.currency,
        "time_zone": s.time_zone,
        "api_calls": result.api_calls,
        **result.load.as_metadata(),
    }
    if quota is not None:
        meta["quota_tokens_per_day_remaining"] = quota.day_remaining
        meta["quota_daily_share_left"] = round(quota.day_share_left(tokens_per_day), 4)
        meta["quota_tokens_last_request"] = quota.day_consumed
        meta["quota_tokens_per_hour_remaining"] = quota.hour_remaining
    if s.time_zone and s.time_zone != prop.timezone:
        meta["time_zone_mismatch"] = f"GA4 says {s.time_zone}, adpipeline.yaml says {prop.timezone}"
    if s.currency and s.currency != prop.currency:
        meta["currency_mismatch"] = f"GA4 says {s.currency}, adpipeline.yaml says {prop.currency}"
    return meta


def build_report_asset(report: Report, config: SourcesConfig,
                       partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    properties = {p.id: p for p in config.ga4.properties}
    restatement_days = config.ga4.restatement_days

    @dg.asset(
        key=["ga4", report.name],
        description=report.description,
        group_name="ga4",
        kinds={*LANDING_KINDS, "ga4"},
        owners=[OWNER],
        code_version=report.code_version,
        partitions_def=partitions_def,
        metadata={"table": report.table.qualified},
    )
    def _asset(context: dg.AssetExecutionContext, warehouse: WarehouseResource, ga4: Ga4Resource) -> dg.MaterializeResult:
        keys = [k if isinstance(k, dg.MultiPartitionKey) else partitions_def.get_partition_key_from_str(k)
                for k in context.partition_keys]
        scopes = [(properties[k.keys_by_dimension[PROPERTY]], date.fromisoformat(k.keys_by_dimension[DATE]))
                  for k in keys]
        try:
            client = ga4.client(warehouse.token_store())
        except CredentialsError as exc:
            raise dg.Failure(description=f"ga4: {exc}", allow_retries=False) from None
        with warehouse.connection() as conn:  # a report declared in adpipeline.yaml may not have its table yet
            try:
                for column in ensure_table(conn, report.table):
                    context.log.info(f"{report.table.qualified}: added column {column} (declared in adpipeline.yaml)")
            except LoadError as exc:
                raise dg.Failure(description=f"ga4/{report.name}: {exc}", allow_retries=False) from None
        runner = ScopeRunner(context, warehouse, source=SOURCE, entity=report.name, action=ACTION)
        loaded: list[ScopeResult] = []
        with client:
            for prop, day in scopes:
                result = pull_report_day(runner=runner, client=client, report=report, prop=prop, day=day,
                                         restatement_days=restatement_days, page_size=ga4.page_size)
                if result is not None:
                    loaded.append(result)
        metadata = {**runner.metadata(), **_run_metadata(report, loaded, properties, client)}
        # when some failed, each loaded (day, property) is recorded as materialized
        partitions = [str(dg.MultiPartitionKey({DATE: r.day.isoformat(), PROPERTY: r.property_id})) for r in loaded]
        return runner.finish([dg.MaterializeResult(metadata=metadata)], partitions)[0]

    return _asset


def _run_metadata(report: Report, loaded: Sequence[ScopeResult], properties: dict[str, Ga4Property],
                  client: Ga4Client) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "table": report.table.qualified,
        "api_calls": client.calls,
        "quota_waits_seconds": round(sum(seconds for _, seconds in client.governor.waits), 1),
    }
    if len(loaded) == 1:
        metadata.update(_scope_metadata(loaded[0], properties[loaded[0].property_id],
                                        client.governor.policy.tokens_per_day))
    elif loaded:
        metadata["scopes"] = dg.MetadataValue.json(
            {f"{r.property_id} {r.day}": _scope_metadata(r, properties[r.property_id], client.governor.policy.tokens_per_day)
             for r in loaded})
        metadata["data_loss_from_other_row"] = any(r.summary.data_loss_from_other_row for r in loaded)
    return metadata
