"""Landing tables `raw_breezeway.*` and the mapping from API rows to them.

Rows that vanish upstream are never dropped: a full reconciliation sets `deleted_at` (and a row that
comes back is loaded with `deleted_at` NULL again). Task children (assignments, supplies, costs) are
child tables keyed by (region_code, task_id, ...), replaced together with their task.

PII policy (ARCHITECTURE, "PII"): door access codes never land in clear: a keyed hash (HMAC with the
token-store key, salted with region and reservation) tells analysts whether a code changed and nothing
more. Guests are reduced to a count; names, e-mails and phones are dropped, also from the stored payload.
Property notes are dropped (they hold lockbox codes and Wi-Fi passwords). Any field with a sensitive name
is removed from payloads wherever it appears, so a field the API adds later cannot leak either.

Local dates and times stay as the API gives them, beside the region's IANA zone, plus `*_at` columns in UTC
converted with that zone (so DST is right); API timestamps without an offset are read in the region's zone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from psycopg.types.json import Jsonb

from adpipeline.config import BreezewayRegion
from adpipeline.warehouse.loader import Table

SCHEMA = "raw_breezeway"

PROPERTIES = Table(
    SCHEMA,
    "properties",
    columns={
        "region_code": "text",
        "id": "bigint",
        "company_id": "bigint",
        "name": "text",
        "status": "text",
        "address1": "text",
        "city": "text",
        "state": "text",
        "zipcode": "text",
        "country": "text",
        "latitude": "numeric(9,6)",
        "longitude": "numeric(9,6)",
        "timezone": "text",
        "reference_property_id": "text",
        "reference_external_property_id": "text",
        "reference_company_id": "text",
        "deleted_at": "timestamptz",
    },
    key=("region_code", "id"),
)

RESERVATIONS = Table(
    SCHEMA,
    "reservations",
    columns={
        "region_code": "text",
        "id": "bigint",
        "property_id": "bigint",
        "status": "text",
        "checkin_date": "date",
        "checkin_time": "time",
        "checkout_date": "date",
        "checkout_time": "time",
        "timezone": "text",
        "checkin_at": "timestamptz",
        "checkout_at": "timestamptz",
        "nights": "integer",
        "guest_count": "integer",
        "access_code_hash": "text",
        "type_guest": "text",
        "type_stay": "text",
        "tags": "jsonb",
        "reference_reservation_id": "text",
        "reference_external_reservation_id": "text",
        "reference_property_id": "text",
        "created_at": "timestamptz",
        "updated_at": "timestamptz",
        "deleted_at": "timestamptz",
    },
    key=("region_code", "id"),
)

TASKS = Table(
    SCHEMA,
    "tasks",
    columns={
        "region_code": "text",
        "id": "bigint",
        "property_id": "bigint",
        "name": "text",
        "department": "text",
        "status_code": "text",
        "status_stage": "text",
        "priority": "text",
        "scheduled_date": "date",
        "template_id": "bigint",
        "reservation_id": "bigint",
        "external_reservation_id": "text",
        "rate_paid": "numeric(14,2)",
        "rate_paid_currency": "text",
        "costs_total": "numeric(14,2)",
        "supplies_total": "numeric(14,2)",
        "currency": "text",
        "assignee_count": "integer",
        "tags": "jsonb",
        "paused": "boolean",
        "report_url": "text",
        "timezone": "text",
        "created_at": "timestamptz",
        "updated_at": "timestamptz",
        "started_at": "timestamptz",
        "finished_at": "timestamptz",
        "deleted_at": "timestamptz",
    },
    key=("region_code", "id"),
)

# a task's children: replaced with the task whenever it is loaded
TASK_ASSIGNMENTS = Table(
    SCHEMA,
    "task_assignments",
    columns={"region_code": "text", "task_id": "bigint", "assignee_id": "bigint", "assignment_id": "bigint",
             "assignee_name": "text", "status": "text"},
    key=("region_code", "task_id", "assignee_id"),
    payload=False,
)
TASK_SUPPLIES = Table(
    SCHEMA,
    "task_supplies",
    columns={"region_code": "text", "task_id": "bigint", "supply_id": "bigint", "name": "text",
             "quantity": "numeric(14,3)", "unit_cost": "numeric(14,4)", "total_cost": "numeric(14,2)",
             "currency": "text", "billable": "boolean"},
    key=("region_code", "task_id", "supply_id"),
    payload=False,
)
TASK_COSTS = Table(
    SCHEMA,
    "task_costs",
    columns={"region_code": "text", "task_id": "bigint", "cost_id": "bigint", "cost_type": "text",
             "description": "text", "amount": "numeric(14,2)", "currency": "text", "billable": "boolean"},
    key=("region_code", "task_id", "cost_id"),
    payload=False,
)
TASK_CHILDREN = (TASK_ASSIGNMENTS, TASK_SUPPLIES, TASK_COSTS)

PEOPLE = Table(
    SCHEMA,
    "people",
    columns={"region_code": "text", "id": "bigint", "name": "text", "status": "text", "active": "boolean",
             "accept_decline_tasks": "boolean", "availability": "jsonb", "deleted_at": "timestamptz"},
    key=("region_code", "id"),
)
SUPPLIES = Table(
    SCHEMA,
    "supplies",
    columns={"region_code": "text", "id": "bigint", "company_id": "bigint", "name": "text", "size": "text",
             "unit_cost": "numeric(14,4)", "currency": "text", "stock_count": "numeric(14,3)",
             "low_stock_alert": "numeric(14,3)", "stock_status": "text", "created_at": "timestamptz",
             "updated_at": "timestamptz", "deleted_at": "timestamptz"},
    key=("region_code", "id"),
)
TAGS = Table(
    SCHEMA,
    "tags",
    columns={"region_code": "text", "id": "bigint", "name": "text", "description": "text",
             "deleted_at": "timestamptz"},
    key=("region_code", "id"),
)
# the tables of the assets (breezeway/<name>); the task children land with breezeway/tasks
ENTITIES = (PROPERTIES, RESERVATIONS, TASKS, PEOPLE, SUPPLIES, TAGS)

SENSITIVE_KEYS = frozenset({
    "access_code", "door_code", "lock_code", "gate_code", "lockbox_code", "alarm_code", "garage_code",
    "passcode", "password", "wifi_password", "pin", "email", "phone", "mobile", "first_name", "last_name",
    "full_name", "birthdate", "date_of_birth",
})  # fmt: skip


def scrub(value: Any) -> Any:
    """A copy without sensitive fields, at any depth."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if str(k).lower() not in SENSITIVE_KEYS}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


# ---- parsing -------------------------------------------------------------------------------------


def parse_date(value: Any) -> date | None:
    return date.fromisoformat(str(value)[:10]) if value else None


def parse_time(value: Any) -> time | None:
    return time.fromisoformat(str(value)) if value else None


def parse_timestamp(value: Any, zone: ZoneInfo) -> datetime | None:
    """ISO timestamp -> aware UTC; one without an offset is local time in `zone`."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(timezone.utc)


def local_instant(day: date | None, at: time | None, zone: ZoneInfo) -> datetime | None:
    """A local date and wall-clock time in `zone` -> aware UTC (DST-correct)."""
    if day is None or at is None:
        return None
    return datetime.combine(day, at, tzinfo=zone).astimezone(timezone.utc)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except InvalidOperation:
        return None


def parse_money(value: Any, default_currency: str) -> tuple[Decimal | None, str | None]:
    """"120.00 USD" -> (Decimal("120.00"), "USD"); a bare number is in `default_currency`."""
    if value in (None, ""):
        return None, None
    if isinstance(value, (int, float, Decimal)):
        return Decimal(str(value)), default_currency
    text = str(value).strip().replace(",", "")
    parts = text.split()
    currency = default_currency
    if len(parts) == 2 and parts[1].isalpha():
        text, currency = parts[0], parts[1].upper()
    elif len(parts) == 2 and parts[0].isalpha():
        currency, text = parts[0].upper(), parts[1]
    text = text.lstrip("$")
    try:
        return Decimal(text), currency
    except InvalidOperation:
        raise ValueError(f"unparseable money value {value!r}") from None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _code(value: Any) -> str | None:
    return _text(value.get("code")) if isinstance(value, dict) else _text(value)


# ---- rows ----------------------------------------------------------------------------------------


def property_row(region: BreezewayRegion, raw: dict[str, Any]) -> dict[str, Any]:
    payload = {k: v for k, v in raw.items() if k != "notes"}
    return {
        "region_code": region.code,
        "id": int(raw["id"]),
        "company_id": _int(raw.get("company_id")),
        "name": _text(raw.get("name")),
        "status": _text(raw.get("status")),
        "address1": _text(raw.get("address1")),
        "city": _text(raw.get("city")),
        "state": _text(raw.get("state")),
        "zipcode": _text(raw.get("zipcode")),
        "country": _text(raw.get("country")),
        "latitude": _decimal(raw.get("latitude")),
        "longitude": _decimal(raw.get("longitude")),
        "timezone": region.timezone,
        "reference_property_id": _text(raw.get("reference_property_id")),
        "reference_external_property_id": _text(raw.get("reference_external_property_id")),
        "reference_company_id": _text(raw.get("reference_company_id")),
        "deleted_at": None,
        "payload": scrub(payload),
    }


Fingerprint = Callable[[str], str]


def reservation_row(region: BreezewayRegion, raw: dict[str, Any], fingerprint: Fingerprint) -> dict[str, Any]:
    zone = ZoneInfo(region.timezone)
    checkin, checkout = parse_date(raw.get("checkin_date")), parse_date(raw.get("checkout_date"))
    checkin_time, checkout_time = parse_time(raw.get("checkin_time")), parse_time(raw.get("checkout_time"))
    guests = raw.get("guests")
    guest_count = len(guests) if isinstance(guests, list) else None
    code = _text(raw.get("access_code"))
    payload = {k: v for k, v in raw.items() if k not in ("guests", "access_code")}
    payload["guest_count"] = guest_count
    return {
        "region_code": region.code,
        "id": int(raw["id"]),
        "property_id": _int(raw.get("property_id")),
        "status": _text(raw.get("status")),
        "checkin_date": checkin,
        "checkin_time": checkin_time,
        "checkout_date": checkout,
        "checkout_time": checkout_time,
        "timezone": region.timezone,
        "checkin_at": local_instant(checkin, checkin_time, zone),
        "checkout_at": local_instant(checkout, checkout_time, zone),
        "nights": (checkout - checkin).days if checkin and checkout else None,
        "guest_count": guest_count,
        "access_code_hash": fingerprint(f"breezeway-access-code|{region.code}|{raw['id']}|{code}") if code else None,
        "type_guest": _code(raw.get("type_guest")),
        "type_stay": _code(raw.get("type_stay")),
        "tags": Jsonb(raw.get("tags") or []),
        "reference_reservation_id": _text(raw.get("reference_reservation_id")),
        "reference_external_reservation_id": _text(raw.get("reference_external_reservation_id")),
        "reference_property_id": _text(raw.get("reference_property_id")),
        "created_at": parse_timestamp(raw.get("created_at"), zone),
        "updated_at": parse_timestamp(raw.get("updated_at"), zone),
        "deleted_at": None,
        "payload": scrub(payload),
    }


def task_rows(region: BreezewayRegion, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """(task row, {child table name: rows}). Money is parsed with its currency; the API's naive
    timestamps (created_at, started_at, finished_at) are local time in the region's zone."""
    zone = ZoneInfo(region.timezone)
    task_id = int(raw["id"])
    status = raw.get("type_task_status") or {}
    linked = raw.get("linked_reservation") or {}
    rate, rate_currency = parse_money(raw.get("rate_paid"), region.currency)
    supplies, costs, assignments = [], [], []
    for item in raw.get("supplies") or []:
        unit_cost, currency = parse_money(item.get("unit_cost"), region.currency)
        quantity = _decimal(item.get("quantity"))
        supplies.append({
            "region_code": region.code, "task_id": task_id, "supply_id": _int(item.get("id")),
            "name": _text(item.get("name")), "quantity": quantity, "unit_cost": unit_cost,
            "total_cost": (quantity * unit_cost).quantize(Decimal("0.01")) if quantity is not None and unit_cost is not None else None,
            "currency": currency, "billable": _bool(item.get("billable")),
        })
    for item in raw.get("costs") or []:
        amount, currency = parse_money(item.get("cost", item.get("amount")), region.currency)
        costs.append({
            "region_code": region.code, "task_id": task_id, "cost_id": _int(item.get("id")),
            "cost_type": _code(item.get("type_cost")), "description": _text(item.get("description")),
            "amount": amount, "currency": currency, "billable": _bool(item.get("billable")),
        })
    for item in raw.get("assignments") or []:
        assignments.append({
            "region_code": region.code, "task_id": task_id, "assignee_id": _int(item.get("assignee_id")),
            "assignment_id": _int(item.get("id")), "assignee_name": _text(item.get("name")),
            "status": _code(item.get("type_task_user_status")),
        })
    currencies = {c["currency"] for c in [*costs, *supplies] if c["currency"]}
    # totals only when one currency is involved (never add USD to EUR); none at all = the region's
    currency = currencies.pop() if len(currencies) == 1 else (region.currency if not currencies else None)

    def total(items: list[dict[str, Any]], field: str) -> Decimal | None:
        if not items or currency is None:
            return None
        return sum((i[field] for i in items if i[field] is not None), Decimal("0"))

    row = {
        "region_code": region.code,
        "id": task_id,
        "property_id": _int(raw.get("home_id")),
        "name": _text(raw.get("name")),
        "department": _code(raw.get("type_department")),
        "status_code": _text(status.get("code")),
        "status_stage": _text(status.get("stage")),
        "priority": _code(raw.get("type_priority")),
        "scheduled_date": parse_date(raw.get("scheduled_date")),
        "template_id": _int(raw.get("template_id")),
        "reservation_id": _int(linked.get("id")),
        "external_reservation_id": _text(linked.get("external_reservation_id")),
        "rate_paid": rate,
        "rate_paid_currency": rate_currency,
        "costs_total": total(costs, "amount"),
        "supplies_total": total(supplies, "total_cost"),
        "currency": currency,
        "assignee_count": len(assignments),
        "tags": Jsonb([t.get("name") if isinstance(t, dict) else t for t in raw.get("task_tags") or []]),
        "paused": _bool(raw.get("paused")),
        "report_url": _text(raw.get("report_url")),
        "timezone": region.timezone,
        "created_at": parse_timestamp(raw.get("created_at"), zone),
        "updated_at": parse_timestamp(raw.get("updated_at"), zone),
        "started_at": parse_timestamp(raw.get("started_at"), zone),
        "finished_at": parse_timestamp(raw.get("finished_at"), zone),
        "deleted_at": None,
        "payload": scrub(raw),
    }
    children = {TASK_ASSIGNMENTS.name: [a for a in assignments if a["assignee_id"] is not None],
                TASK_SUPPLIES.name: [s for s in supplies if s["supply_id"] is not None],
                TASK_COSTS.name: [c for c in costs if c["cost_id"] is not None]}
    return row, children


def person_row(region: BreezewayRegion, raw: dict[str, Any], status: str) -> dict[str, Any]:
    return {
        "region_code": region.code, "id": int(raw["id"]), "name": _text(raw.get("name")),
        "status": _text(raw.get("status")) or status, "active": _bool(raw.get("active")),
        "accept_decline_tasks": _bool(raw.get("accept_decline_tasks")),
        "availability": Jsonb(raw.get("availability") or {}), "deleted_at": None, "payload": scrub(raw),
    }


def supply_row(region: BreezewayRegion, raw: dict[str, Any]) -> dict[str, Any]:
    zone = ZoneInfo(region.timezone)
    unit_cost, currency = parse_money(raw.get("unit_cost"), region.currency)
    return {
        "region_code": region.code, "id": int(raw["id"]), "company_id": _int(raw.get("company_id")),
        "name": _text(raw.get("name")), "size": _text(raw.get("size")), "unit_cost": unit_cost,
        "currency": currency, "stock_count": _decimal(raw.get("stock_count")),
        "low_stock_alert": _decimal(raw.get("low_stock_alert")), "stock_status": _code(raw.get("type_stock_status")),
        "created_at": parse_timestamp(raw.get("created_at"), zone),
        "updated_at": parse_timestamp(raw.get("updated_at"), zone), "deleted_at": None, "payload": scrub(raw),
    }


def tag_row(region: BreezewayRegion, raw: dict[str, Any]) -> dict[str, Any]:
    return {"region_code": region.code, "id": int(raw["id"]), "name": _text(raw.get("name")),
            "description": _text(raw.get("description")), "deleted_at": None, "payload": scrub(raw)}
