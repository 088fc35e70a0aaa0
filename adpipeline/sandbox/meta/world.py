"""The Meta sandbox's data: ad accounts, the campaign > ad set > ad hierarchy and daily insights.

Everything is a pure function of (seed, scale, sandbox clock), computed on demand: an entity from its
index, an insights row from (ad, day). Nothing proportional to the insights volume is ever held, so a
scale of 1000 serves millions of rows. Entity specs are small and cached per (seed, scale).

Time behaves like Meta's: entities are edited over time (`updated_time` moves, some get paused,
archived or deleted); a day's delivery accumulates while the day runs (in the ACCOUNT's time zone);
purchases are attributed late, up to 28 days after the day (so re-pulls see higher conversions), and a
few rows disappear a while after the day (invalid-traffic clean-ups).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

ANCHOR = datetime(2026, 11, 23, tzinfo=timezone.utc)  # entities are created in the ~14 months before this
WINDOWS = ("1d_click", "7d_click", "28d_click", "1d_view")  # attribution windows Meta still returns (2026)
RETIRED_WINDOWS = ("7d_view", "28d_view")  # accepted in requests, no longer returned since Jan 2026
WINDOW_DAYS = {"1d_click": 1, "7d_click": 7, "28d_click": 28, "1d_view": 1}
ADS_PER_ADSET, ADSETS_PER_CAMPAIGN = 4, 3
PAUSED_SHARE, DELIVERY_SHARE, VANISH_SHARE = 0.08, 0.93, 0.02
DAY_CACHE_SIZE, DAY_CACHE_MAX_ADS = 8, 50_000


@dataclass(frozen=True)
class Account:
    number: int
    name: str
    timezone_name: str
    currency: str
    base_ads: int  # ads at scale 1.0
    account_status: int = 1  # 1 active, 2 disabled, 101 closed
    # the action types its purchases are reported under (all the same purchases: they overlap), which
    # depends on the account's setup (pixel, Conversions API, app events); the script can override it
    purchase_types: tuple[str, ...] = ("purchase", "omni_purchase")

    @property
    def account_id(self) -> str:
        return f"1000000000000{self.number:02d}"

    @property
    def id(self) -> str:
        return f"act_{self.account_id}"

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone_name)

    def today(self, now: datetime) -> date:
        return now.astimezone(self.zone).date()

    def day_start(self, day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=self.zone).astimezone(timezone.utc)


# Every purchase action type Meta reports; an account returns a subset of them for the same purchases.
PURCHASE_TYPES = ("omni_purchase", "purchase", "offsite_conversion.fb_pixel_purchase", "onsite_web_purchase",
                  "onsite_web_app_purchase", "app_custom_event.fb_mobile_purchase")

# The default adpipeline.yaml lists the first three; the fourth is reachable with the token but not configured.
ACCOUNTS: tuple[Account, ...] = (
    Account(1, "Sandbox Jamaica Resorts", "America/Jamaica", "USD", 48),
    Account(2, "Sandbox Mountain Lodges", "America/Denver", "USD", 36),
    Account(3, "Sandbox Coastal Homes EU", "Europe/London", "GBP", 24, purchase_types=PURCHASE_TYPES),  # pixel + CAPI + app
    Account(4, "Sandbox Legacy Outlet", "America/New_York", "USD", 8, account_status=101),
)
ACCOUNTS_BY_NUMBER = {a.number: a for a in ACCOUNTS}
# Scripted extra accounts (benchmarks of many accounts): alike, 50 ads each at scale 1.0, numbered from 11.
EXTRA_ACCOUNT_FIRST, EXTRA_ACCOUNTS_MAX, EXTRA_ACCOUNT_ADS = 11, 89, 50


@lru_cache(maxsize=None)
def extra_account(number: int) -> Account:
    return Account(number, f"Sandbox Portfolio {number - EXTRA_ACCOUNT_FIRST + 1:02d}", "America/Jamaica", "USD",
                   EXTRA_ACCOUNT_ADS)


def accounts(extra: int = 0) -> tuple[Account, ...]:
    """The fixed accounts plus `extra` scripted ones."""
    return ACCOUNTS + tuple(extra_account(EXTRA_ACCOUNT_FIRST + i) for i in range(extra))


@lru_cache(maxsize=None)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


# ---- deterministic randomness: splitmix64, cheap enough to call a dozen times per insights row -------

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def uniforms(key: int, n: int) -> list[float]:
    """n floats in [0, 1) determined by `key` (16 bits each: four per 64-bit draw, which is plenty here)."""
    out: list[float] = []
    while len(out) < n:
        key = _mix(key)
        out += ((key & 0xFFFF) / 65536.0, ((key >> 16) & 0xFFFF) / 65536.0,
                ((key >> 32) & 0xFFFF) / 65536.0, (key >> 48) / 65536.0)
    return out


def _key(*parts: int) -> int:
    h = 0
    for part in parts:
        h = _mix(h ^ (part & _MASK))
    return h


# ---- the hierarchy ---------------------------------------------------------------------------------

KIND_CODE = {"campaign": 1, "adset": 2, "ad": 3}
OBJECTIVES = ("OUTCOME_SALES", "OUTCOME_TRAFFIC", "OUTCOME_LEADS", "OUTCOME_AWARENESS")
THEMES = ("Winter Escape", "Beach Week", "Family Cabins", "Last Minute", "Ski Season", "City Break",
          "Long Stay", "Spring Deals", "Lakeside", "Pet Friendly")  # fmt: skip


def entity_id(account: Account, kind: str, index: int) -> str:
    return f"2385{account.number:02d}{KIND_CODE[kind]}{index:010d}"


@dataclass(frozen=True, slots=True)
class Entity:
    kind: str
    account: Account
    index: int
    id: str
    key: int
    name: str
    created: datetime
    edit_every: float  # seconds between edits
    end_status: str | None  # DELETED / ARCHIVED at end_at
    end_at: datetime | None
    parent: Entity | None
    # delivery profile (ads only matter)
    spend_mean: float
    cpm: float
    ctr: float
    cvr: float
    aov: float
    budget_minor: int
    objective: str
    created_ts: float = 0.0
    end_ts: float | None = None

    def status_at(self, ts: float) -> str | None:
        """Own status at unix time `ts`; None before the entity exists. Each edit may pause it."""
        if ts < self.created_ts:
            return None
        if self.end_ts is not None and ts >= self.end_ts:
            return self.end_status
        n = int((ts - self.created_ts) // self.edit_every)
        if n and (_mix(self.key ^ n) & 0xFFFF) / 65536.0 < PAUSED_SHARE:
            return "PAUSED"
        return "ACTIVE"

    def state_at(self, t: datetime) -> tuple[str, datetime] | None:
        """(status, updated_time) at t; None before the entity exists."""
        status = self.status_at(t.timestamp())
        if status is None:
            return None
        if status in ("DELETED", "ARCHIVED"):
            assert self.end_at is not None
            return status, self.end_at
        n = int((t - self.created).total_seconds() // self.edit_every)
        return status, self.created + timedelta(seconds=n * self.edit_every)

    def effective_status(self, t: datetime | float, memo: dict[str, str | None] | None = None) -> str | None:
        """Own status, or CAMPAIGN_PAUSED / ADSET_PAUSED when a parent is not active (memo: per-instant cache)."""
        if memo is not None and self.id in memo:
            return memo[self.id]
        ts = t if isinstance(t, float) else t.timestamp()
        result = self.status_at(ts)
        if result == "ACTIVE" and self.parent is not None:
            parent = self.parent.effective_status(ts, memo)
            if parent != "ACTIVE":
                # a paused campaign pauses its ad sets' ads too
                result = parent if parent and parent.endswith("_PAUSED") else f"{self.parent.kind.upper()}_PAUSED"
        if memo is not None:
            memo[self.id] = result
        return result


class World:
    """The hierarchy of every account for one (seed, scale); entities built on first use and kept."""

    def __init__(self, seed: int, scale: float) -> None:
        self.seed = seed
        self.scale = scale
        self._entities: dict[tuple[int, str, int], Entity] = {}
        self.labels: dict[str, dict[str, str]] = {}  # entity id -> its ids and names (insights rows)
        # the last few account-days computed whole (account totals), so their ad rows are not computed twice
        self._days: OrderedDict[tuple[int, int, float], list[AdDay | None]] = OrderedDict()

    def counts(self, account: Account) -> dict[str, int]:
        ads = max(1, round(account.base_ads * self.scale))
        adsets = math.ceil(ads / ADS_PER_ADSET)
        return {"ad": ads, "adset": adsets, "campaign": math.ceil(adsets / ADSETS_PER_CAMPAIGN)}

    def entity(self, account: Account, kind: str, index: int) -> Entity:
        cache_key = (account.number, kind, index)
        found = self._entities.get(cache_key)
        if found is None:
            found = self._entities[cache_key] = self._build(account, kind, index)
        return found

    def entities(self, account: Account, kind: str) -> Iterator[Entity]:
        for index in range(self.counts(account)[kind]):
            yield self.entity(account, kind, index)

    def day(self, view: DayView, compute: bool = True) -> list[AdDay | None] | None:
        """Every ad's row of one account-day at one instant (None where an ad has none), kept for a while.
        With compute=False, only what is already kept. Very large days are not kept (memory stays bounded)."""
        key = (view.account.number, view.day.toordinal(), view.now, view.account.base_ads)  # ads: a script may change them
        found = self._days.get(key)
        if found is not None or not compute:
            return found
        found = [ad_day(ad, view) for ad in self.entities(view.account, "ad")]
        if len(found) <= DAY_CACHE_MAX_ADS:
            self._days[key] = found
            while len(self._days) > DAY_CACHE_SIZE:
                self._days.popitem(last=False)
        return found

    def _build(self, account: Account, kind: str, index: int) -> Entity:
        key = _key(self.seed, account.number, KIND_CODE[kind], index)
        u = uniforms(key, 14)
        parent = None
        if kind == "ad":
            parent = self.entity(account, "adset", index // ADS_PER_ADSET)
        elif kind == "adset":
            parent = self.entity(account, "campaign", index // ADSETS_PER_CAMPAIGN)
        # children are created after their parent
        earliest = parent.created if parent else ANCHOR - timedelta(days=420)
        span = max(1.0, (ANCHOR - timedelta(days=20) - earliest).total_seconds())
        created = earliest + timedelta(seconds=int(span * u[0] * (0.5 if kind != "campaign" else 1.0)))
        end_status, end_at = None, None
        if u[1] < 0.06:
            end_status = "DELETED"
        elif u[1] < 0.12:
            end_status = "ARCHIVED"
        if end_status:
            end_at = created + timedelta(seconds=int(86400 * (10 + 440 * u[2])))
        theme = THEMES[int(u[3] * len(THEMES))]
        label = {"campaign": "Campaign", "adset": "Ad set", "ad": "Ad"}[kind]
        return Entity(
            kind=kind,
            account=account,
            index=index,
            id=entity_id(account, kind, index),
            key=key,
            name=f"{label} {index + 1} - {theme}",
            created=created,
            edit_every=86400 * (1.5 + 13.5 * u[4]),
            end_status=end_status,
            end_at=end_at,
            parent=parent,
            spend_mean=round(8 + 60 * u[5] ** 2, 2),
            cpm=4 + 14 * u[6],
            ctr=0.008 + 0.04 * u[7],
            cvr=0.02 + 0.08 * u[8],
            aov=60 + 340 * u[9],
            budget_minor=int(1000 + 19000 * u[10]) // 100 * 100,
            objective=OBJECTIVES[int(u[11] * len(OBJECTIVES))],
            created_ts=created.timestamp(),
            end_ts=end_at.timestamp() if end_at else None,
        )


@lru_cache(maxsize=8)
def world(seed: int, scale: float) -> World:
    return World(seed, scale)


# ---- insights ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayView:
    """Everything about one account-day at a given `now` that is the same for all its ads."""

    account: Account
    day: date
    share: float  # fraction of the day's delivery that has happened (partial today, 1 for past days)
    age_days: float  # days since the day began
    noon: float  # unix time at which statuses are taken: local noon (or now, for today before noon)
    maturity: dict[str, float]  # fraction of each window's conversions attributed so far
    now: float  # the instant this view describes (unix time)
    memo: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)  # parents' statuses

    @classmethod
    def at(cls, account: Account, day: date, now: datetime) -> DayView:
        start = account.day_start(day)
        elapsed = (now - start).total_seconds() / 86400
        share = min(1.0, max(0.0, elapsed))
        noon = min(start + timedelta(hours=12), now).timestamp()
        maturity = {w: min(1.0, max(0.0, elapsed / (WINDOW_DAYS[w] + 1))) for w in WINDOWS}
        return cls(account, day, share, max(0.0, elapsed), noon, maturity, now.timestamp())


@dataclass(frozen=True, slots=True)
class AdDay:
    """One ad's numbers for one day as reported now (unrounded spend kept for account totals)."""

    ad: Entity
    spend: float
    impressions: int
    clicks: int
    reach: int
    purchases: dict[str, int]  # per window, as attributed so far
    purchase_value: dict[str, float]
    add_to_cart: int
    landing_page_views: int


def ad_day(ad: Entity, view: DayView) -> AdDay | None:
    """The ad's row for the day at `now`, or None when there is none (no delivery, future, vanished)."""
    if view.share <= 0.0 or ad.effective_status(view.noon, view.memo) != "ACTIVE":
        return None
    u = uniforms(ad.key ^ (view.day.toordinal() * 0x9E3779B97F4A7C15), 10)
    if u[0] >= DELIVERY_SHARE:
        return None
    if u[1] < VANISH_SHARE and view.age_days > 1.5 + 18 * u[2]:
        return None  # Meta dropped this row after the fact
    spend_final = ad.spend_mean * (0.4 + 1.2 * u[3])
    impressions = int(spend_final / ad.cpm * 1000 * view.share)
    if impressions <= 0:
        return None
    spend = spend_final * view.share
    clicks = int(impressions * ad.ctr * (0.7 + 0.6 * u[4]))
    reach = int(impressions / (1.1 + 0.6 * u[5]))
    expected = clicks * ad.cvr
    final_28 = int(expected * (0.6 + 0.8 * u[6]) + u[7])
    final_7 = int(final_28 * (0.75 + 0.25 * u[8]))
    final_1 = int(final_7 * (0.55 + 0.45 * u[9]))
    final_view = int(expected * 0.35 * u[2] + u[5])
    m = view.maturity
    p1 = int(final_1 * m["1d_click"])
    p7 = max(p1, int(final_7 * m["7d_click"]))
    p28 = max(p7, int(final_28 * m["28d_click"]))
    pv = int(final_view * m["1d_view"])
    purchases = {"1d_click": p1, "7d_click": p7, "28d_click": p28, "1d_view": pv}
    aov = ad.aov * (0.85 + 0.3 * u[3])
    values = {w: n * aov for w, n in purchases.items()}  # formatted to cents when served
    return AdDay(ad, spend, impressions, clicks, reach, purchases, values,
                 add_to_cart=p28 * 3 + int(clicks * 0.05), landing_page_views=int(clicks * (0.7 + 0.2 * u[4])))


def default_attribution(counts: dict[str, float]) -> float:
    """Meta's `value`: the default attribution setting, 7-day click + 1-day view."""
    return counts["7d_click"] + counts["1d_view"]
