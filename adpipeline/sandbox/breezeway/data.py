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
            changes = [created + timedelta(seconds=rng.uniform(60, span)) for _ in range(rng.choice((0, 0, 1, 1, 2, 3)))]
            if rng.random() < 0.35:  # post-stay: reviews, damage claims, owner statements touch past stays
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
            row["updated_at"] = _iso(when)
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
