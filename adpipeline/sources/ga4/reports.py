"""GA4 reports, declared as data: each `Report` is one asset `ga4/<name>` landing in `raw_ga4.<name>`.

The reports pulled are `ga4.reports` in adpipeline.yaml (field lists as data; absent: the built-in `REPORTS`
below, which the dbt staging models read and whose tables migration 0004 creates). A configured report's
table is created from its declaration when absent, and a metric added later gets its column (`ensure_table`);
a changed dimension list changes the natural key, so it needs a new report name (a new table) or a migration.
Every table has the same shape:

    property_id, report_date        the scope one run replaces (report_date: the property's calendar day)
    date, date_raw                  GA4's `date` typed (NULL for `(other)`) and exactly as sent
    <dimensions>                    text, as GA4 sends them (`(not set)` kept)
    is_other                        true when GA4 folded the row into `(other)` (cardinality limit)
    <metrics>                       typed from metricHeaders: bigint, numeric, seconds, money
    currency                        metadata.currencyCode, beside the money columns
    payload, loaded_at              the raw row and the load time

The natural key is (property_id, report_date, date_raw, <dimensions>): an `(other)` row keeps a key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from adpipeline.config import Ga4Report, SourcesConfig
from adpipeline.http.errors import ApiError, ErrorKind
from adpipeline.warehouse.loader import Table

SCHEMA = "raw_ga4"
OTHER = "(other)"

# GA4 metric types -> Postgres column types
PG_TYPES = {
    "TYPE_INTEGER": "bigint",
    "TYPE_FLOAT": "numeric",
    "TYPE_SECONDS": "numeric",
    "TYPE_MILLISECONDS": "numeric",
    "TYPE_MINUTES": "numeric",
    "TYPE_HOURS": "numeric",
    "TYPE_STANDARD": "numeric",
    "TYPE_CURRENCY": "numeric(18,6)",
    "TYPE_FEET": "numeric",
    "TYPE_MILES": "numeric",
    "TYPE_METERS": "numeric",
    "TYPE_KILOMETERS": "numeric",
}


def snake(name: str) -> str:
    """`sessionDefaultChannelGroup` -> `session_default_channel_group`."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


@dataclass(frozen=True)
class Dimension:
    name: str  # GA4 API name
    column: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "column", self.column or snake(self.name))


@dataclass(frozen=True)
class Metric:
    name: str  # GA4 API name
    type: str  # the metricHeaders type GA4 reports for it
    column: str = ""

    def __post_init__(self) -> None:
        if self.type not in PG_TYPES:
            raise ValueError(f"metric {self.name}: unknown GA4 metric type {self.type}")
        object.__setattr__(self, "column", self.column or snake(self.name))

    @property
    def pg_type(self) -> str:
        return PG_TYPES[self.type]

    def parse(self, value: str) -> int | Decimal:
        if self.type == "TYPE_INTEGER":
            return int(value)
        return Decimal(value)


@dataclass(frozen=True)
class Report:
    name: str
    description: str
    dimensions: tuple[Dimension, ...]  # besides `date`, which every report has first
    metrics: tuple[Metric, ...]
    version: str = "1"  # bump when the extraction logic (not the declaration) changes

    @classmethod
    def from_config(cls, spec: Ga4Report) -> Report:
        dimensions = tuple(Dimension(d) if isinstance(d, str) else Dimension(d.name, d.column or "")
                           for d in spec.dimensions)
        metrics = tuple(Metric(m.name, m.type, m.column or "") for m in spec.metrics)
        return cls(spec.name, spec.description, dimensions, metrics)

    @property
    def table(self) -> Table:
        columns: dict[str, str] = {"property_id": "text", "report_date": "date", "date": "date", "date_raw": "text"}
        columns.update({d.column: "text" for d in self.dimensions})
        columns["is_other"] = "boolean"
        columns.update({m.column: m.pg_type for m in self.metrics})
        columns["currency"] = "text"
        key = ("property_id", "report_date", "date_raw", *(d.column for d in self.dimensions))
        return Table(SCHEMA, self.name, columns, key)

    @property
    def code_version(self) -> str:
        declared = repr((self.dimensions, self.metrics))
        return f"{self.version}-{hashlib.sha256(declared.encode()).hexdigest()[:10]}"

    @property
    def api_dimensions(self) -> list[str]:
        return ["date", *(d.name for d in self.dimensions)]

    def request(self, day: date, page_size: int) -> dict[str, Any]:
        """The runReport body for one day (the property's calendar day), first page."""
        return {
            "dateRanges": [{"startDate": day.isoformat(), "endDate": day.isoformat()}],
            "dimensions": [{"name": n} for n in self.api_dimensions],
            "metrics": [{"name": m.name} for m in self.metrics],
            # a total order on the dimensions keeps paging stable while GA4 holds the data still
            "orderBys": [{"dimension": {"dimensionName": n}} for n in self.api_dimensions],
            "limit": str(page_size),
            "offset": "0",
            "keepEmptyRows": False,
            "returnPropertyQuota": True,
        }

    def rows(self, pages: Iterable[dict[str, Any]], *, property_id: str, day: date, summary: ReportSummary,
             source: str = "ga4", scope: str | None = None) -> Iterator[dict[str, Any]]:
        """Typed table rows from runReport pages, streamed; fills `summary` as pages go by."""
        where = scope or f"properties/{property_id}"
        stamp = day.strftime("%Y%m%d")

        def bad(message: str) -> ApiError:
            return ApiError(ErrorKind.BAD_PAYLOAD, f"{self.name} {day}: {message}", source=source, scope=where)

        for page in pages:
            summary.observe_page(page)
            if summary.pages == 1:
                self._check_headers(page, bad)
            for raw in page.get("rows") or []:
                dims = [v.get("value") for v in raw.get("dimensionValues") or []]
                values = [v.get("value") for v in raw.get("metricValues") or []]
                if len(dims) != len(self.dimensions) + 1 or len(values) != len(self.metrics):
                    raise bad("a row does not match the report's dimension and metric headers")
                date_raw, rest = dims[0], dims[1:]
                if date_raw == OTHER:
                    typed_date = None
                elif date_raw == stamp:
                    typed_date = day
                else:
                    raise bad(f"row dated {date_raw!r} in a report for {stamp}")
                is_other = OTHER in dims
                row: dict[str, Any] = {"property_id": property_id, "report_date": day, "date": typed_date,
                                       "date_raw": date_raw, "is_other": is_other, "currency": summary.currency}
                row.update({d.column: v for d, v in zip(self.dimensions, rest)})
                try:
                    typed = [m.parse(v) for m, v in zip(self.metrics, values)]
                except (TypeError, ValueError, InvalidOperation):
                    raise bad(f"a metric value is not a number: {values}") from None
                row.update({m.column: v for m, v in zip(self.metrics, typed)})
                row["payload"] = {"dimensions": dict(zip(self.api_dimensions, dims)),
                                  "metrics": dict(zip((m.name for m in self.metrics), values))}
                summary.observe_row(is_other, typed[0] if typed else 0)
                yield row
        if summary.rows != summary.row_count:  # GA4 restated the day between two pages: pull it again
            raise ApiError(ErrorKind.TRANSIENT, f"{self.name} {day}: received {summary.rows} rows but rowCount "
                           f"says {summary.row_count} (the report changed while paging)", source=source, scope=where)

    def _check_headers(self, page: dict[str, Any], bad) -> None:
        dims = [h.get("name") for h in page.get("dimensionHeaders") or []]
        if dims != self.api_dimensions:
            raise bad(f"dimension headers {dims} differ from the request {self.api_dimensions}")
        sent = [(h.get("name"), h.get("type")) for h in page.get("metricHeaders") or []]
        declared = [(m.name, m.type) for m in self.metrics]
        if sent != declared:
            raise bad(f"metric headers {sent} differ from the declaration {declared}: update reports.py "
                      "(and its table) if GA4 changed a metric's type")


@dataclass
class ReportSummary:
    """What one (report, property, day) pull saw besides its rows: GA4 metadata and quota."""

    currency: str | None = None
    time_zone: str | None = None
    data_loss_from_other_row: bool = False
    subject_to_thresholding: bool = False
    empty_reason: str | None = None
    row_count: int = 0
    pages: int = 0
    rows: int = 0
    other_rows: int = 0
    total_first_metric: Decimal = Decimal(0)
    other_first_metric: Decimal = Decimal(0)
    quota: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def observe_page(self, page: dict[str, Any]) -> None:
        self.pages += 1
        meta = page.get("metadata") or {}
        self.metadata = meta
        self.currency = meta.get("currencyCode") or self.currency
        self.time_zone = meta.get("timeZone") or self.time_zone
        self.data_loss_from_other_row |= bool(meta.get("dataLossFromOtherRow"))
        self.subject_to_thresholding |= bool(meta.get("subjectToThresholding"))
        self.empty_reason = meta.get("emptyReason") or self.empty_reason
        self.row_count = int(page.get("rowCount") or 0)
        self.quota = page.get("propertyQuota") or self.quota

    def observe_row(self, is_other: bool, first_metric: int | Decimal) -> None:
        self.rows += 1
        self.total_first_metric += first_metric
        if is_other:
            self.other_rows += 1
            self.other_first_metric += first_metric

    @property
    def other_share(self) -> Decimal:
        if not self.total_first_metric:
            return Decimal(0)
        return (self.other_first_metric / self.total_first_metric).quantize(Decimal("0.000001"))

    def quota_value(self, name: str, field_: str) -> int | None:
        value = (self.quota.get(name) or {}).get(field_)
        return int(value) if value is not None else None


# One row per (report, property, day) pull: GA4's metadata and the property quota seen at its end.
REPORT_METADATA = Table(
    SCHEMA,
    "report_metadata",
    {
        "report": "text",
        "property_id": "text",
        "report_date": "date",
        "observed_at": "timestamptz",
        "row_count": "bigint",
        "other_rows": "bigint",
        "other_share": "numeric",
        "data_loss_from_other_row": "boolean",
        "subject_to_thresholding": "boolean",
        "empty_reason": "text",
        "currency": "text",
        "time_zone": "text",
        "tokens_per_day_consumed": "bigint",
        "tokens_per_day_remaining": "bigint",
        "tokens_per_hour_consumed": "bigint",
        "tokens_per_hour_remaining": "bigint",
    },
    ("report", "property_id", "report_date"),
)


def metadata_row(report: Report, property_id: str, day: date, summary: ReportSummary,
                 observed_at: datetime) -> dict[str, Any]:
    return {
        "report": report.name,
        "property_id": property_id,
        "report_date": day,
        "observed_at": observed_at,
        "row_count": summary.row_count,
        "other_rows": summary.other_rows,
        "other_share": summary.other_share,
        "data_loss_from_other_row": summary.data_loss_from_other_row,
        "subject_to_thresholding": summary.subject_to_thresholding,
        "empty_reason": summary.empty_reason,
        "currency": summary.currency,
        "time_zone": summary.time_zone,
        "tokens_per_day_consumed": summary.quota_value("tokensPerDay", "consumed"),
        "tokens_per_day_remaining": summary.quota_value("tokensPerDay", "remaining"),
        "tokens_per_hour_consumed": summary.quota_value("tokensPerHour", "consumed"),
        "tokens_per_hour_remaining": summary.quota_value("tokensPerHour", "remaining"),
        "payload": {"metadata": summary.metadata, "propertyQuota": summary.quota},
    }


TRAFFIC_ACQUISITION = Report(
    name="traffic_acquisition",
    description=(
        "GA4 traffic acquisition per property and day: sessions, users, engagement, key events and purchase "
        "revenue by session source, medium, campaign and default channel group. Days are the property's "
        "calendar days; today and the trailing restatement window are re-pulled and replaced."
    ),
    dimensions=(
        Dimension("sessionSource"),
        Dimension("sessionMedium"),
        Dimension("sessionCampaignName"),
        Dimension("sessionDefaultChannelGroup"),
    ),
    metrics=(
        Metric("sessions", "TYPE_INTEGER"),
        Metric("totalUsers", "TYPE_INTEGER"),
        Metric("newUsers", "TYPE_INTEGER"),
        Metric("engagedSessions", "TYPE_INTEGER"),
        Metric("userEngagementDuration", "TYPE_SECONDS", column="user_engagement_duration_seconds"),
        Metric("keyEvents", "TYPE_FLOAT"),
        Metric("purchaseRevenue", "TYPE_CURRENCY"),
    ),
)

LANDING_PAGE_EVENTS = Report(
    name="landing_page_events",
    description=(
        "GA4 landing pages and events per property and day: sessions, users, event counts, key events and "
        "purchase revenue by landing page (with query string) and event name. High-cardinality days fold "
        "into GA4's (other) row, kept and flagged (is_other, date NULL, date_raw '(other)')."
    ),
    dimensions=(
        Dimension("landingPagePlusQueryString", column="landing_page"),
        Dimension("eventName"),
    ),
    metrics=(
        Metric("sessions", "TYPE_INTEGER"),
        Metric("totalUsers", "TYPE_INTEGER"),
        Metric("eventCount", "TYPE_INTEGER"),
        Metric("keyEvents", "TYPE_FLOAT"),
        Metric("purchaseRevenue", "TYPE_CURRENCY"),
    ),
)

REPORTS: tuple[Report, ...] = (TRAFFIC_ACQUISITION, LANDING_PAGE_EVENTS)


def configured_reports(config: SourcesConfig) -> tuple[Report, ...]:
    """The reports adpipeline.yaml declares (`ga4.reports`), else the built-in ones."""
    if config.ga4.reports is None:
        return REPORTS
    return tuple(Report.from_config(spec) for spec in config.ga4.reports)
