"""The GA4 sandbox's data: a deterministic hit table per (property, day) and runReport's aggregation.

Each (property, day) holds "slices" of sessions (one traffic source, landing page, device and country)
with the events those sessions fired. A slice becomes visible `arrival` hours after the start of its day
(processing lag), and a few are filtered out again later (spam), so a day keeps changing until 72 hours
after it ended, then is final. Everything derives from `state.rng(...)`, so a seed fixes every number.

Aggregation follows GA4: metrics sum to the requested dimensions; session-scoped metrics count the
sessions in which an event fired when `eventName` is a dimension, and every session once otherwise;
ratios are computed after summing. Beyond `CARDINALITY_CAP` rows in a day, the rest folds into one
`(other)` row (every dimension `(other)`, `date` included) and `dataLossFromOtherRow` is set.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

OTHER = "(other)"
CARDINALITY_CAP = 1000  # rows per day per query (GA4: 50,000 standard; scaled to the sandbox's data)
FINAL_AFTER_HOURS = 24 + 72  # a day is final 72 h after it ended: later events are dropped
SESSION_START = "session_start"


@dataclass(frozen=True)
class PropertyProfile:
    id: str
    display_name: str
    time_zone: str
    currency: str
    slices_per_day: int  # at scale 1.0
    long_tail_share: float  # share of slices landing on a one-off URL (search pages with query strings)
    readable: bool = True  # False: exists, but the sandbox's principals have no access (403)
    # utm_campaign values of its Paid Social (facebook / cpc) traffic: most name a campaign of the Meta
    # sandbox's ad account for the same site (dbt seed campaign_mapping), one on purpose does not
    paid_social_campaigns: tuple[str, ...] = ("retargeting_q4", "lookalike_travelers", "video_views_nov")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


PROPERTIES: dict[str, PropertyProfile] = {
    p.id: p
    for p in [
        PropertyProfile("310000001", "Sandbox Resorts Web", "America/Jamaica", "USD", 400, 0.0,
                        paid_social_campaigns=("jm_long_stay", "jm_pet_friendly", "retargeting_q4")),
        PropertyProfile("310000002", "Sandbox Lodges Web", "America/Denver", "USD", 700, 0.45,
                        paid_social_campaigns=("lodges_city_break", "lodges_spring_deals", "retargeting_q4")),
        PropertyProfile("310000003", "Sandbox Partner Web", "Europe/London", "GBP", 200, 0.0, readable=False),
    ]
}

# (source, medium, campaigns, default channel group, weight)
CHANNELS = [
    ("google", "organic", ("(organic)",), "Organic Search", 30),
    ("(direct)", "(none)", ("(direct)",), "Direct", 20),
    ("google", "cpc", ("winter_sale_2026", "brand_terms", "generic_cabins", "last_minute_deals", "holiday_2026"),
     "Paid Search", 16),
    ("facebook", "cpc", (), "Paid Social", 8),  # campaigns: the property's paid_social_campaigns
    ("instagram", "social", ("(referral)",), "Organic Social", 5),
    ("newsletter", "email", ("november_digest", "abandoned_cart", "loyalty_members"), "Email", 5),
    ("tripadvisor.com", "referral", ("(referral)",), "Referral", 6),
    ("bing", "organic", ("(organic)",), "Organic Search", 4),
    ("bing", "cpc", ("winter_sale_2026", "brand_terms"), "Paid Search", 3),
    ("(not set)", "(not set)", ("(not set)",), "Unassigned", 2),
]
PAGES = ["/", "/stays", "/offers", "/contact", "/about", "/blog/winter-escapes", "/blog/family-trips"] + [
    f"/stays/{name}" for name in (
        "ocean-view-villa", "cliffside-suite", "garden-cottage", "river-lodge", "pine-cabin", "summit-chalet",
        "lakeside-loft", "harbour-flat", "beach-bungalow", "canyon-house", "meadow-barn", "city-studio",
        "forest-retreat", "island-hideaway", "valley-farmhouse", "desert-casita",
    )
]  # fmt: skip
DEVICES = [("desktop", 45), ("mobile", 50), ("tablet", 5)]
COUNTRIES = [("United States", 60), ("Canada", 12), ("United Kingdom", 10), ("Jamaica", 8), ("Germany", 5), ("(not set)", 5)]
# (event, probability a session slice fires it, is a key event)
EVENTS = [
    ("page_view", 1.0, False),
    ("user_engagement", 0.7, False),
    ("scroll", 0.4, False),
    ("view_item", 0.35, False),
    ("begin_checkout", 0.08, False),
    ("generate_lead", 0.05, True),
    ("purchase", 0.03, True),
]


class Hit(NamedTuple):
    """One event name fired in one slice of sessions. Session-scoped fields count the slice's sessions
    in which this event fired (for `session_start`: all of them)."""

    source: str
    medium: str
    campaign: str
    channel: str
    landing_page: str
    landing_page_query: str
    device: str
    country: str
    event: str
    arrival: float  # hours after the day's start when the hit becomes visible
    removed: float | None  # hours after the day's start when it is filtered out again (spam)
    event_count: int
    key_events: int
    revenue_cents: int
    sessions: int
    users: int
    new_users: int
    engaged: int
    engagement_seconds: int


# ---- the catalogue of dimensions and metrics -----------------------------------------------

DIMENSIONS: dict[str, Callable[[Hit], str]] = {
    "sessionSource": lambda h: h.source,
    "sessionMedium": lambda h: h.medium,
    "sessionCampaignName": lambda h: h.campaign,
    "sessionDefaultChannelGroup": lambda h: h.channel,
    "landingPage": lambda h: h.landing_page,
    "landingPagePlusQueryString": lambda h: h.landing_page_query,
    "deviceCategory": lambda h: h.device,
    "country": lambda h: h.country,
    "eventName": lambda h: h.event,
}  # plus "date", which is the day itself
ALL_DIMENSIONS = ("date", *DIMENSIONS)

# accumulator slots
EVENTS_, KEY, REVENUE, SESSIONS, USERS, NEW_USERS, ENGAGED, ENGAGE_S, VIEWS = range(9)
SLOTS = 9


@dataclass(frozen=True)
class MetricDef:
    type: str
    value: Callable[[list[int]], int | float | Decimal]


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


METRICS: dict[str, MetricDef] = {
    "sessions": MetricDef("TYPE_INTEGER", lambda v: v[SESSIONS]),
    "totalUsers": MetricDef("TYPE_INTEGER", lambda v: v[USERS]),
    "newUsers": MetricDef("TYPE_INTEGER", lambda v: v[NEW_USERS]),
    "engagedSessions": MetricDef("TYPE_INTEGER", lambda v: v[ENGAGED]),
    "engagementRate": MetricDef("TYPE_FLOAT", lambda v: _ratio(v[ENGAGED], v[SESSIONS])),
    "bounceRate": MetricDef("TYPE_FLOAT", lambda v: 1.0 - _ratio(v[ENGAGED], v[SESSIONS]) if v[SESSIONS] else 0.0),
    "userEngagementDuration": MetricDef("TYPE_SECONDS", lambda v: v[ENGAGE_S]),
    "averageSessionDuration": MetricDef("TYPE_SECONDS", lambda v: _ratio(v[ENGAGE_S], v[SESSIONS])),
    "screenPageViews": MetricDef("TYPE_INTEGER", lambda v: v[VIEWS]),
    "eventCount": MetricDef("TYPE_INTEGER", lambda v: v[EVENTS_]),
    "keyEvents": MetricDef("TYPE_FLOAT", lambda v: float(v[KEY])),
    "conversions": MetricDef("TYPE_FLOAT", lambda v: float(v[KEY])),  # the pre-2024 name of keyEvents
    "purchaseRevenue": MetricDef("TYPE_CURRENCY", lambda v: Decimal(v[REVENUE]).scaleb(-2)),
    "totalRevenue": MetricDef("TYPE_CURRENCY", lambda v: Decimal(v[REVENUE]).scaleb(-2)),
}


def format_metric(value: int | float | Decimal) -> str:
    """GA4 sends every metric as a string: "1520", "0.4523809523809524", "339.99", "3"."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


# ---- generation ----------------------------------------------------------------------------


def _weighted(rng: random.Random, options: Sequence[tuple]) -> tuple:
    return rng.choices(options, weights=[o[-1] for o in options])[0]


def generate_day(seed: int, scale: float, profile: PropertyProfile, day: date) -> tuple[Hit, ...]:
    """Every hit of one property's day as it will finally be, independent of the clock."""
    rng = random.Random(f"{seed}:ga4.day:{profile.id}:{day.isoformat()}")
    weekend = day.weekday() >= 5
    slices = max(0, round(profile.slices_per_day * scale * (1.2 if weekend else 1.0) * rng.uniform(0.9, 1.1)))
    hits: list[Hit] = []
    for _ in range(slices):
        source, medium, campaigns, channel, _w = _weighted(rng, CHANNELS)
        campaigns = campaigns or profile.paid_social_campaigns
        campaign = campaigns[min(int(rng.expovariate(0.8)), len(campaigns) - 1)]
        if rng.random() < profile.long_tail_share:
            page = "/search"
            query = f"/search?checkin={day.isoformat()}&nights={rng.randint(1, 14)}&ref={rng.getrandbits(32):08x}"
        else:
            page = PAGES[min(int(rng.paretovariate(1.2)) - 1, len(PAGES) - 1)]
            query = page + (f"?utm_campaign={campaign}" if medium in ("cpc", "email") else "")
        device = _weighted(rng, DEVICES)[0]
        country = _weighted(rng, COUNTRIES)[0]
        sessions = 1 + min(int(rng.expovariate(1 / 6)), 80)
        users = max(1, round(sessions * rng.uniform(0.7, 0.95)))
        new_users = round(users * rng.uniform(0.3, 0.8))
        engaged = round(sessions * rng.uniform(0.4, 0.8))
        engagement = round(sessions * rng.uniform(20, 240))
        hour = rng.random() * 24
        arrival = hour + min(2 + rng.expovariate(1 / 6), 70.0)  # processing lag, up to 72 h
        removed = min(arrival + 12 + rng.random() * 24, FINAL_AFTER_HOURS - 1) if rng.random() < 0.03 else None
        base = (source, medium, campaign, channel, page, query, device, country)
        slice_ = (arrival, removed, sessions, users, new_users, engaged, engagement)
        hits.append(_hit(base, slice_, SESSION_START, sessions, sessions))
        for event, probability, is_key in EVENTS:
            with_event = sessions if probability >= 1.0 else sum(rng.random() < probability for _ in range(sessions))
            if not with_event:
                continue
            count = with_event if is_key else round(with_event * rng.uniform(1.0, 4.0))
            revenue = sum(rng.randint(15_000, 150_000) for _ in range(count)) if event == "purchase" else 0
            hits.append(_hit(base, slice_, event, count, with_event, key=count if is_key else 0, revenue=revenue))
    return tuple(hits)


def _hit(base: tuple[str, ...], slice_: tuple, event: str, count: int, with_event: int, key: int = 0,
         revenue: int = 0) -> Hit:
    """One event of a slice; its session-scoped numbers are the share of the slice's sessions that fired it."""
    arrival, removed, sessions, users, new_users, engaged, engagement = slice_
    share = with_event / sessions
    return Hit(*base, event, arrival, removed, count, key, revenue, with_event, max(1, round(users * share)),
               round(new_users * share), round(engaged * share), round(engagement * share))


class Dataset:
    """Generated days (cached) and their state at a given sandbox time."""

    def __init__(self, seed: int, scale: float) -> None:
        self.seed = seed
        self.scale = scale
        # a generated day holds ~6 hits per slice: keep fewer days in memory at larger scales
        self._final = lru_cache(maxsize=max(4, int(64 / max(scale, 1.0))))(self._generate)

    def _generate(self, property_id: str, day: date) -> tuple[Hit, ...]:
        return generate_day(self.seed, self.scale, PROPERTIES[property_id], day)

    @staticmethod
    def hours_into(profile: PropertyProfile, day: date, now: datetime) -> int:
        """Whole hours from the start of `day` (property zone) to `now`; the data's revision number."""
        start = datetime.combine(day, time(0), tzinfo=profile.zone)
        return math.floor((now - start) / timedelta(hours=1))

    def hits(self, property_id: str, day: date, now: datetime) -> list[Hit]:
        """The hits of `day` visible at `now`: nothing before the day starts, final 72 h after it ends."""
        profile = PROPERTIES[property_id]
        hour = self.hours_into(profile, day, now)
        if hour < 0:
            return []
        final = self._final(property_id, day)
        if hour >= FINAL_AFTER_HOURS:
            return [h for h in final if h.removed is None]
        return [h for h in final if h.arrival <= hour and (h.removed is None or h.removed > hour)]


# ---- aggregation ---------------------------------------------------------------------------


@dataclass
class Aggregate:
    dimension_names: list[str]
    metric_names: list[str]
    rows: list[tuple[tuple[str, ...], list[int]]]  # (dimension values, accumulator)
    data_loss: bool
    scanned: int  # hits read, for the quota cost

    def metric_values(self, acc: list[int]) -> list[int | float | Decimal]:
        return [METRICS[m].value(acc) for m in self.metric_names]


def aggregate(days: list[tuple[date, list[Hit]]], dimensions: list[str], metrics: list[str]) -> Aggregate:
    """Sum hits to the requested dimensions, day by day; fold each day's rows beyond the cap into (other)."""
    by_event = "eventName" in dimensions
    getters = [None if d == "date" else DIMENSIONS[d] for d in dimensions]
    order_metric = METRICS[metrics[0]] if metrics else None
    merged: dict[tuple[str, ...], list[int]] = {}
    data_loss = False
    scanned = 0
    for day, hits in days:
        stamp = day.strftime("%Y%m%d")
        groups: dict[tuple[str, ...], list[int]] = {}
        for h in hits:
            scanned += 1
            key = tuple(stamp if g is None else g(h) for g in getters)
            acc = groups.get(key)
            if acc is None:
                acc = groups[key] = [0] * SLOTS
            acc[EVENTS_] += h.event_count
            acc[KEY] += h.key_events
            acc[REVENUE] += h.revenue_cents
            if h.event == "page_view":
                acc[VIEWS] += h.event_count
            if by_event or h.event == SESSION_START:
                acc[SESSIONS] += h.sessions
                acc[USERS] += h.users
                acc[NEW_USERS] += h.new_users
                acc[ENGAGED] += h.engaged
                acc[ENGAGE_S] += h.engagement_seconds
        if len(groups) > CARDINALITY_CAP:
            data_loss = True
            ranked = sorted(groups.items(), key=lambda kv: (-(order_metric.value(kv[1]) if order_metric else 0), kv[0]))
            groups = dict(ranked[: CARDINALITY_CAP - 1])
            other = [0] * SLOTS
            for _, acc in ranked[CARDINALITY_CAP - 1 :]:
                for i in range(SLOTS):
                    other[i] += acc[i]
            groups[(OTHER,) * len(dimensions)] = other
        for key, acc in groups.items():
            into = merged.get(key)
            if into is None:
                merged[key] = acc
            else:
                for i in range(SLOTS):
                    into[i] += acc[i]
    return Aggregate(list(dimensions), list(metrics), list(merged.items()), data_loss, scanned)


def sort_rows(result: Aggregate, order_bys: list[dict]) -> None:
    """GA4 `orderBys` (dimension or metric, `desc`); by default the first metric descending, then the
    dimension values, so paging through an unchanged result is stable."""
    keys: list[tuple[Callable, bool]] = []
    for spec in order_bys:
        desc = bool(spec.get("desc", False))
        if "metric" in spec:
            index = result.metric_names.index(spec["metric"]["metricName"])
            keys.append((lambda r, i=index: float(result.metric_values(r[1])[i]), desc))
        elif "dimension" in spec:
            index = result.dimension_names.index(spec["dimension"]["dimensionName"])
            keys.append((lambda r, i=index: r[0][i], desc))
    if not keys and result.metric_names:
        keys.append((lambda r: float(result.metric_values(r[1])[0]), True))
    result.rows.sort(key=lambda r: r[0])  # final tie-break: the dimension values
    for key, desc in reversed(keys):  # stable sorts, least significant first
        result.rows.sort(key=key, reverse=desc)
