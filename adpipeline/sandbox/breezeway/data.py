"""The Breezeway sandbox data set: 8 companies, their properties and stays, deterministic from the seed.

The static part of the data set (which properties and stays exist, when each stay was created and when it
changes) is a pure function of (seed, scale, anchor) and is built once per company, lazily, on first use;
rows are rendered only for the page asked for. What a client sees at a given sandbox time is that data set
"played forward" to the clock: stays created after `now` do not exist yet, and each stay's changes
(modifications, cancellations, post-stay updates) are applied up to `now`, bumping `updated_at`.

History runs from `anchor - HISTORY_DAYS` to `anchor + FUTURE_DAYS`; the anchor is the sandbox clock's
start, so the data always surrounds the demo's "now".
"""

from __future__ import annotations

import bisect
import hashlib
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

HISTORY_DAYS = 730
FUTURE_DAYS = 365
NEW_PROPERTY_DAYS = 60  # properties keep appearing for this long after the anchor

PROPERTY_BASE = (350, 650)  # properties per company at scale 1.0 (drawn per company)


@dataclass(frozen=True)
class Company:
    id: int
    code: str
    name: str
    timezone: str
    state: str
    cities: tuple[str, ...]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


COMPANIES: dict[int, Company] = {
    c.id: c
    for c in (
        Company(8558, "nashville", "Nashville", "America/Chicago", "TN", ("Nashville", "Franklin", "Brentwood")),
        Company(8561, "austin", "Austin", "America/Chicago", "TX", ("Austin", "Round Rock", "Lakeway")),
        Company(8399, "smoky", "Smoky Mountains", "America/New_York", "TN", ("Gatlinburg", "Pigeon Forge", "Sevierville")),
        Company(12314, "hilton_head", "Hilton Head", "America/New_York", "SC", ("Hilton Head Island", "Bluffton")),
        Company(10530, "breckenridge", "Breckenridge", "America/Denver", "CO", ("Breckenridge", "Frisco", "Keystone")),
        Company(14717, "sea_ranch", "Sea Ranch", "America/Los_Angeles", "CA", ("The Sea Ranch", "Gualala")),
        Company(14720, "mammoth", "Mammoth", "America/Los_Angeles", "CA", ("Mammoth Lakes", "June Lake")),
        Company(8559, "hill_country", "Hill Country", "America/Chicago", "TX", ("Fredericksburg", "Wimberley", "Kerrville")),
    )
}


def client_id(company_id: int) -> str:
    """The sandbox's demo client id for a company (not a secret: only the sandbox accepts it)."""
    return f"bw-sandbox-{company_id}"


def client_secret(company_id: int) -> str:
    """The sandbox's demo client secret for a company (not a secret: only the sandbox accepts it)."""
    return "bw-sandbox-secret-" + hashlib.sha256(f"breezeway-sandbox:{company_id}".encode()).hexdigest()[:24]


def company_for_client(client: str) -> Company | None:
    prefix = "bw-sandbox-"
    if not client.startswith(prefix) or not client[len(prefix):].isdigit():
        return None
    return COMPANIES.get(int(client[len(prefix):]))


# ---- the static data set -------------------------------------------------------------------------


@dataclass(slots=True)
class Stay:
    """A reservation as generated: what exists and when it changes; fields are rendered on demand."""

    id: int
    property_id: int
    checkin: date
    checkout: date
    created_at: datetime
    changes: tuple[datetime, ...]  # modification times after creation, sorted (cancellation included)
    cancel_at: datetime | None

    def visible(self, now: datetime) -> bool:
        return self.created_at <= now

    def changes_until(self, now: datetime) -> int:
        return bisect.bisect_right(self.changes, now)

    def updated_at(self, now: datetime) -> datetime:
        n = self.changes_until(now)
        return self.changes[n - 1] if n else self.created_at

    def next_event(self, now: datetime) -> datetime | None:
        """When this stay next appears or changes after `now` (None: never again)."""
        if not self.visible(now):
            return self.created_at
        n = self.changes_until(now)
        return self.changes[n] if n < len(self.changes) else None


@dataclass(slots=True)
class Property:
    id: int
    created_at: datetime
    row: dict[str, Any]


@dataclass
class CompanyData:
    company: Company
    properties: list[Property]
    stays: list[Stay]  # sorted by id
    property_index: dict[int, Property] = field(default_factory=dict)
    stay_index: dict[int, Stay] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.property_index = {p.id: p for p in self.properties}
        self.stay_index = {s.id: s for s in self.stays}


STREETS = ("Maple", "Ridge", "Lakeview", "Summit", "Creekside", "Pine", "Harbor", "Bluff", "Aspen", "Willow", "Oak",
           "Cedar", "Meadow", "Canyon", "Sunset")
KINDS = ("Cabin", "Cottage", "Lodge", "Retreat", "Villa", "Condo", "House", "Chalet", "Bungalow")
FIRST = ("Ava", "Liam", "Mia", "Noah", "Emma", "Owen", "Zoe", "Eli", "Ivy", "Jack", "Nora", "Leo", "Ruby", "Sam")
LAST = ("Smith", "Garcia", "Nguyen", "Johnson", "Brown", "Patel", "Miller", "Davis", "Lopez", "Wilson", "Clark")
TAGS = ("vip", "pet", "early_checkin", "late_checkout", "repeat_guest", "damage_claim", "review_requested",
        "owner_referral", "extra_cleaning")
STAY_TYPES = ((("guest_stay", "Guest Stay"), 85), (("owner_stay", "Owner Stay"), 10), (("maintenance_block", "Maintenance Block"), 5))
CHANNELS = ("AIRBNB", "VRBO", "DIRECT", "BOOKING")


def property_id(company: Company, index: int) -> int:
    return company.id * 100_000 + index + 1


def _utc(day: date, seconds: float = 0.0) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc) + timedelta(seconds=seconds)


@lru_cache(maxsize=64)
def company_data(seed: int, scale: float, anchor: date, company_id: int) -> CompanyData:
    """The company's static data set (cached: a pure function of its arguments)."""
    company = COMPANIES[company_id]
    rng = random.Random(f"{seed}:breezeway.company:{company_id}")
    count = max(1, round(rng.randint(*PROPERTY_BASE) * scale))
    start = anchor - timedelta(days=HISTORY_DAYS)
    end = anchor + timedelta(days=FUTURE_DAYS)
    properties = [_property(seed, company, i, start, anchor) for i in range(count)]
    stays: list[Stay] = []
    next_id = company.id * 10_000_000 + 1
    for prop in properties:
        for stay in _stays(seed, prop, start, end):
            stay.id = next_id
            next_id += 1
            stays.append(stay)
    return CompanyData(company, properties, stays)


def _property(seed: int, company: Company, index: int, start: date, anchor: date) -> Property:
    pid = property_id(company, index)
    rng = random.Random(f"{seed}:breezeway.property:{pid}")
    if rng.random() < 0.03:  # a few are onboarded while the sandbox runs
        created = _utc(anchor, rng.uniform(3600, NEW_PROPERTY_DAYS * 86400))
    else:
        created = _utc(start - timedelta(days=rng.randint(0, 900)), rng.uniform(0, 86400))
    city = rng.choice(company.cities)
    street = rng.choice(STREETS)
    name = f"{street} {rng.choice(KINDS)} {rng.randint(1, 99)}"
    lat, lon = {"TN": (35.9, -86.5), "TX": (30.3, -98.2), "SC": (32.2, -80.7), "CO": (39.5, -106.0),
                "CA": (37.9, -120.3)}[company.state]
    row = {
        "id": pid,
        "name": name,
        "address1": f"{rng.randint(10, 9999)} {street} {rng.choice(['Rd', 'Ln', 'Dr', 'Way', 'Ct'])}",
        "address2": None,
        "city": city,
        "state": company.state,
        "zipcode": f"{rng.randint(10000, 99999)}",
        "country": "US",
        "latitude": round(lat + rng.uniform(-0.4, 0.4), 6),
        "longitude": round(lon + rng.uniform(-0.4, 0.4), 6),
        "company_id": company.id,
        "status": "active" if rng.random() < 0.92 else "inactive",
        "notes": {
            "general": f"{rng.randint(1, 6)} bedrooms, sleeps {rng.randint(2, 16)}",
            "access": f"Lockbox by the side door, code {rng.randint(1000, 9999)}",
            "wifi": f"Network {street}Guest, password {street.lower()}{rng.randint(100, 999)}",
        },
        "groups": [{"id": company.id * 10 + rng.randint(1, 4), "name": f"{city} portfolio"}],
        "photos": [
            {"id": pid * 10 + k, "url": f"https://photos.example.com/{pid}/{k}.jpg", "default": k == 0,
             "caption": rng.choice(["Living room", "Kitchen", "View", "Bedroom", "Deck"])}
            for k in range(rng.randint(1, 4))
        ],
        "reference_company_id": str(company.id),
        "reference_external_property_id": f"EXT-{pid}",
        "reference_property_id": f"P{rng.randint(100000, 999999)}",
    }
    return Property(pid, created, row)


def _stays(seed: int, prop: Property, start: date, end: date) -> list[Stay]:
    rng = random.Random(f"{seed}:breezeway.stays:{prop.id}")
    out: list[Stay] = []
    day = start + timedelta(days=rng.randint(0, 90))
    while day < end:
        nights = rng.choice((2, 2, 3, 3, 3, 4, 4, 5, 7, 7, 10, 14))
        checkin, checkout = day, day + timedelta(days=nights)
        created = _utc(checkin, 15 * 3600) - timedelta(days=rng.randint(1, 150), seconds=rng.uniform(0, 86400))
        if created < prop.created_at:
            created = prop.created_at + timedelta(seconds=rng.uniform(60, 7200))
        if created < _utc(checkin, 15 * 3600):
            last = _utc(checkout, 10 * 3600 + 10 * 86400)
            span = (last - created).total_seconds()
            changes = [created + timedelta(seconds=rng.uniform(60, span)) for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4)))]
            if rng.random() < 0.5:  # post-stay: reviews, damage claims, owner statements touch past stays
                changes.append(_utc(checkout, rng.uniform(1, 45) * 86400))
            cancel_at = None
            if rng.random() < 0.07:
                cancel_at = created + timedelta(seconds=rng.uniform(60, (_utc(checkin) - created).total_seconds()))
                changes = [c for c in changes if c < cancel_at] + [cancel_at]
            out.append(Stay(0, prop.id, checkin, checkout, created, tuple(sorted(changes)), cancel_at))
        day = checkout + timedelta(days=rng.randint(3, 150))
    return out


# ---- rendering -----------------------------------------------------------------------------------


def render_stay(seed: int, stay: Stay, now: datetime, overrides: list[tuple[datetime, dict[str, Any]]]) -> dict[str, Any]:
    """The reservation as the API shows it at `now` (its changes up to `now` applied)."""
    rng = random.Random(f"{seed}:breezeway.stay:{stay.id}")
    guests = [_guest(rng, primary=i == 0) for i in range(rng.randint(1, 6))]
    (stay_type, stay_name) = rng.choices([t for t, _ in STAY_TYPES], weights=[w for _, w in STAY_TYPES])[0]
    channel = rng.choice(CHANNELS)
    row: dict[str, Any] = {
        "id": stay.id,
        "property_id": stay.property_id,
        "checkin_date": stay.checkin.isoformat(),
        "checkin_time": rng.choice(("15:00:00", "16:00:00", "16:00:00", "15:30:00", "17:00:00")),
        "checkout_date": stay.checkout.isoformat(),
        "checkout_time": rng.choice(("10:00:00", "11:00:00", "10:30:00")),
        "access_code": f"{rng.randint(0, 999999):06d}",
        "guests": guests,
        "status": "active",
        "tags": [],
        "type_guest": {"code": "owner", "name": "Owner"} if stay_type == "owner_stay" else {"code": "guest", "name": "Guest"},
        "type_stay": {"code": stay_type, "name": stay_name},
        "reference_external_reservation_id": f"{channel}-{rng.randint(10**7, 10**8 - 1)}",
        "reference_reservation_id": f"R{stay.id % 10_000_000:07d}",
        "reference_property_id": f"EXT-{stay.property_id}",
        "created_at": _iso(stay.created_at),
        "updated_at": _iso(stay.created_at),
    }
    for i in range(stay.changes_until(now)):
        when = stay.changes[i]
        if when == stay.cancel_at:
            row["status"] = "cancelled"
        else:
            _apply_change(random.Random(f"{seed}:breezeway.stay:{stay.id}:change:{i}"), row)
        row["updated_at"] = _iso(when)
    for when, changes in overrides:
        if when <= now:
            row.update(changes)
            # a scripted `updated_at` is an upstream clock that lies (even into the future), served as given
            row["updated_at"] = changes.get("updated_at") or _iso(when)
    return row


def _guest(rng: random.Random, primary: bool) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return {
        "first_name": first,
        "last_name": last,
        "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 999)}@example.com",
        "phone": f"+1{rng.randint(200, 999)}555{rng.randint(1000, 9999)}",
        "primary": primary,
    }


def _apply_change(rng: random.Random, row: dict[str, Any]) -> None:
    what = rng.choice(("checkout_time", "guests", "tag", "tag", "access_code", "checkin_time"))
    if what == "checkout_time":
        row["checkout_time"] = rng.choice(("11:00:00", "12:00:00", "13:00:00"))
    elif what == "checkin_time":
        row["checkin_time"] = rng.choice(("13:00:00", "14:00:00", "18:00:00"))
    elif what == "guests":
        guests = list(row["guests"])
        if len(guests) > 1 and rng.random() < 0.5:
            guests.pop()
        else:
            guests.append(_guest(rng, primary=False))
        row["guests"] = guests
    elif what == "access_code":
        row["access_code"] = f"{rng.randint(0, 999999):06d}"
    else:
        tag = rng.choice(TAGS)
        if tag not in row["tags"]:
            row["tags"] = [*row["tags"], tag]


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="seconds")


# ---- tasks, people, supplies, tags (issue 8) ------------------------------------------------------

TASK_HISTORY_DAYS = 365  # tasks are kept for the last year of stays (older ones are archived upstream)
DEPARTMENTS = ("housekeeping", "inspection", "maintenance")
MAINTENANCE = ("Replace air filter", "Fix leaking faucet", "Hot tub service", "Pest control", "Repair deck board",
               "Replace smoke detector battery", "HVAC inspection", "Restock linens")
SUPPLY_NAMES = ("Toilet paper", "Paper towels", "Dish soap", "Laundry pods", "Coffee pods", "Trash bags",
                "Hand soap", "Shampoo", "Light bulbs", "Air filter", "Batteries", "Sponges")
TASK_TAGS = ("urgent", "owner_request", "guest_reported", "recurring", "warranty", "deep_clean", "pet_hair",
             "hot_tub", "linen_swap", "late_checkout", "vip_arrival", "photos_required")
STATUS = {"created": ("created", "Created", "new"), "in_progress": ("in_progress", "In Progress", "in_progress"),
          "finished": ("finished", "Finished", "finished")}


@dataclass(slots=True)
class Task:
    id: int
    property_id: int
    department: str
    scheduled: date
    created_at: datetime
    started_at: datetime
    finished_at: datetime
    deleted_at: datetime | None  # housekeeping of a cancelled stay is deleted upstream
    reservation_id: int | None
    changes: tuple[datetime, ...]  # every moment it changes: created, edits, started, finished, costs added

    def visible(self, now: datetime) -> bool:
        return self.created_at <= now and (self.deleted_at is None or self.deleted_at > now)

    def updated_at(self, now: datetime) -> datetime:
        n = bisect.bisect_right(self.changes, now)
        return self.changes[n - 1] if n else self.created_at


@dataclass
class CompanyTasks:
    by_property: dict[int, list[Task]]
    index: dict[int, Task]
    people: list[dict[str, Any]]
    supplies: list[dict[str, Any]]  # rows without the clock-dependent fields (see render_supply)
    tags: list[dict[str, Any]]


def _local(day: date, hours: float, zone: ZoneInfo) -> datetime:
    return (datetime.combine(day, time(), tzinfo=zone) + timedelta(hours=hours)).astimezone(timezone.utc)


@lru_cache(maxsize=16)
def company_tasks(seed: int, scale: float, anchor: date, company_id: int) -> CompanyTasks:
    """Tasks per property (from the stays: a departure clean, often an inspection; plus maintenance),
    the company's people, supply catalogue and task tags. Cached like `company_data`."""
    data = company_data(seed, scale, anchor, company_id)
    company, zone = data.company, data.company.zone
    rng = random.Random(f"{seed}:breezeway.staff:{company_id}")
    people = [_person(rng, company, i) for i in range(max(3, round(rng.randint(20, 60) * scale)))]
    supplies = [_supply(rng, company, i, anchor) for i in range(max(3, round(rng.randint(40, 120) * scale)))]
    tags = [{"id": company.id * 100 + i + 1, "name": name, "description": f"{name.replace('_', ' ')} tasks",
             "company_id": company.id} for i, name in enumerate(TASK_TAGS)]
    since = anchor - timedelta(days=TASK_HISTORY_DAYS)
    end = anchor + timedelta(days=FUTURE_DAYS)
    stays_by_property: dict[int, list[Stay]] = {}
    for stay in data.stays:
        stays_by_property.setdefault(stay.property_id, []).append(stay)
    by_property: dict[int, list[Task]] = {}
    next_id = company.id * 10_000_000 + 1
    for prop in data.properties:
        trng = random.Random(f"{seed}:breezeway.tasks:{prop.id}")
        tasks: list[Task] = []
        for stay in stays_by_property.get(prop.id, []):
            if stay.checkout < since:
                continue
            clean_start = _local(stay.checkout, 11 + trng.uniform(0, 2), zone)
            tasks.append(_task(trng, prop.id, "housekeeping", stay.checkout, stay.created_at + timedelta(minutes=5),
                               clean_start, trng.uniform(1.5, 4), stay.cancel_at, stay.id))
            if trng.random() < 0.5:
                tasks.append(_task(trng, prop.id, "inspection", stay.checkout, stay.created_at + timedelta(minutes=6),
                                   clean_start + timedelta(hours=4.5), trng.uniform(0.5, 1), stay.cancel_at, stay.id))
        day = since + timedelta(days=trng.randint(0, 60))
        while day < end:
            start = _local(day, 9 + trng.uniform(0, 6), zone)
            created = start - timedelta(days=trng.uniform(1, 20))
            tasks.append(_task(trng, prop.id, "maintenance", day, created, start, trng.uniform(1, 5), None, None))
            day += timedelta(days=trng.randint(60, 200))
        tasks.sort(key=lambda t: (t.scheduled, t.department))
        for task in tasks:
            task.id = next_id
            next_id += 1
        by_property[prop.id] = tasks
    index = {t.id: t for tasks in by_property.values() for t in tasks}
    return CompanyTasks(by_property, index, people, supplies, tags)


def _task(rng: random.Random, property_id: int, department: str, scheduled: date, created: datetime,
          started: datetime, hours: float, cancelled: datetime | None, reservation_id: int | None) -> Task:
    finished = started + timedelta(hours=hours)
    changes = [created, started, finished]
    if rng.random() < 0.3 and started - created > timedelta(hours=1):  # reassigned before work starts
        changes.append(created + (started - created) * rng.uniform(0.1, 0.9))
    if department == "maintenance" or rng.random() < 0.15:  # costs are entered a few days after the work
        changes.append(finished + timedelta(days=rng.uniform(0.5, 3)))
    deleted = cancelled + timedelta(minutes=2) if cancelled else None
    return Task(0, property_id, department, scheduled, created, started, finished, deleted, reservation_id,
                tuple(sorted(changes)))


def _person(rng: random.Random, company: Company, index: int) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    status = rng.choices(("active", "invited", "inactive"), weights=(80, 5, 15))[0]
    days = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    return {
        "id": company.id * 1000 + index + 1,
        "name": f"{first} {last}",
        "active": status == "active",
        "status": status,
        "accept_decline_tasks": rng.random() < 0.6,
        "email": f"{first.lower()}.{last.lower()}@staff.example.com",
        "phone": f"+1{rng.randint(200, 999)}555{rng.randint(1000, 9999)}",
        "availability": {d: [{"start": f"{rng.choice((7, 8, 9)):02d}:00:00", "end": f"{rng.choice((15, 16, 17)):02d}:00:00"}]
                         for d in days if rng.random() < 0.7},
    }


def _supply(rng: random.Random, company: Company, index: int, anchor: date) -> dict[str, Any]:
    name = SUPPLY_NAMES[index % len(SUPPLY_NAMES)]
    return {
        "id": company.id * 1000 + index + 1,
        "company_id": company.id,
        "name": f"{name} ({rng.choice(['case', 'box', 'pack', 'each'])})",
        "size": rng.choice(("S", "M", "L", "12 ct", "24 ct")),
        "unit_cost": round(rng.uniform(0.5, 60), 2),
        "base_stock": rng.randint(20, 400),
        "daily_use": rng.randint(0, 6),
        "low_stock_alert": rng.randint(5, 30),
        "created_at": _iso(_utc(anchor - timedelta(days=rng.randint(30, 900)), rng.uniform(0, 86400))),
    }


def render_supply(row: dict[str, Any], now: datetime, anchor: date) -> dict[str, Any]:
    """Stock is counted every morning at 06:00 UTC for supplies in use: updated_at follows the clock."""
    out = {k: v for k, v in row.items() if k not in ("base_stock", "daily_use")}
    days = max(0, (now - _utc(anchor, 6 * 3600)).days + 1) if now >= _utc(anchor, 6 * 3600) else 0
    stock = row["base_stock"] - (row["daily_use"] * days) % max(1, row["base_stock"])
    out["stock_count"] = stock
    status = ("in_stock", "In stock") if stock > row["low_stock_alert"] else ("low_stock", "Low stock")
    out["type_stock_status"] = {"code": status[0], "name": status[1]}
    last_count = _utc(anchor, 6 * 3600) + timedelta(days=days - 1) if row["daily_use"] and days else None
    out["updated_at"] = _iso(last_count) if last_count else row["created_at"]
    return out


def render_task(seed: int, task: Task, now: datetime, company: Company, tasks: CompanyTasks,
                stay: Stay | None) -> dict[str, Any]:
    """The task as the API shows it at `now`: created_at/started_at/finished_at are NAIVE local times,
    updated_at carries +00:00; rate_paid and costs are strings with a currency."""
    rng = random.Random(f"{seed}:breezeway.task:{task.id}")
    zone = company.zone
    if now >= task.finished_at:
        status = STATUS["finished"]
    elif now >= task.started_at:
        status = STATUS["in_progress"]
    else:
        status = STATUS["created"]
    crew = [p for p in tasks.people if p["status"] == "active"] or tasks.people
    assignees = rng.sample(crew, k=min(len(crew), rng.choice((1, 1, 1, 2))))
    edits = bisect.bisect_right(task.changes, now)
    if edits > 1 and len(crew) > 1 and task.changes[1] < task.started_at:  # the reassignment happened
        assignees = [crew[(crew.index(assignees[0]) + 1) % len(crew)], *assignees[1:]]
    if task.department == "housekeeping":
        name, rate = "Departure Clean", f"{rng.choice((85, 95, 120, 140, 175))}.00 {'USD'}"
    elif task.department == "inspection":
        name, rate = "Post-clean Inspection", f"{rng.choice((35, 45, 60))}.00 USD"
    else:
        name, rate = rng.choice(MAINTENANCE), None
    costs_entered = now >= task.changes[-1] and task.changes[-1] > task.finished_at
    supplies = [
        {"id": s["id"], "name": s["name"], "quantity": rng.randint(1, 4), "unit_cost": s["unit_cost"],
         "billable": rng.random() < 0.5}
        for s in rng.sample(tasks.supplies, k=min(len(tasks.supplies), rng.randint(0, 3)))
    ] if costs_entered or task.department == "housekeeping" else []
    costs = [
        {"id": task.id * 10 + k, "description": rng.choice(("Labor", "Parts", "Trip charge", "Disposal fee")),
         "cost": f"{rng.uniform(15, 400):.2f} USD", "type_cost": {"code": c, "name": c.title()}, "billable": True}
        for k, c in enumerate(rng.sample(("labor", "material", "fee"), k=rng.randint(1, 2)))
    ] if costs_entered else []
    return {
        "id": task.id,
        "name": name,
        "home_id": task.property_id,
        "type_department": task.department,
        "type_priority": {"code": rng.choice(("normal", "normal", "high", "urgent")), "name": "Priority"},
        "type_task_status": {"code": status[0], "name": status[1], "stage": status[2]},
        "scheduled_date": task.scheduled.isoformat(),
        "template_id": {"housekeeping": 501, "inspection": 502, "maintenance": 503}[task.department],
        "assignments": [{"id": task.id * 10 + i, "assignee_id": p["id"], "name": p["name"],
                         "type_task_user_status": {"code": "accepted" if now >= task.started_at else "assigned"}}
                        for i, p in enumerate(assignees)],
        "supplies": supplies,
        "costs": costs,
        "task_tags": [{"id": t["id"], "name": t["name"]} for t in rng.sample(tasks.tags, k=rng.choice((0, 0, 1, 2)))],
        "created_at": _naive_local(task.created_at, zone),
        "updated_at": _iso(task.updated_at(now)),
        "started_at": _naive_local(task.started_at, zone) if now >= task.started_at else None,
        "finished_at": _naive_local(task.finished_at, zone) if now >= task.finished_at else None,
        "paused": False,
        "report_url": f"https://app.breezeway.io/task/report/{task.id}",
        "rate_paid": rate,
        "linked_reservation": {"id": stay.id, "external_reservation_id": f"R{stay.id % 10_000_000:07d}"}
        if stay is not None else None,
    }


def _naive_local(dt: datetime, zone: ZoneInfo) -> str:
    return dt.astimezone(zone).replace(tzinfo=None).isoformat(timespec="seconds")
