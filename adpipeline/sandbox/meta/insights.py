"""Insights rows in Meta's JSON shape: numbers as strings, `actions` with per-window keys, aggregation
to campaign / ad set / account level, and lazy iteration from a paging position."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from adpipeline.sandbox.meta.world import (
    WINDOWS,
    Account,
    AdDay,
    DayView,
    Entity,
    World,
    ad_day,
    default_attribution,
)

LEVELS = ("ad", "adset", "campaign", "account")
ID_FIELDS = {
    "account_id", "account_name", "account_currency", "campaign_id", "campaign_name", "adset_id", "adset_name",
    "ad_id", "ad_name", "objective",
}  # fmt: skip
NUMBER_FIELDS = {"spend", "impressions", "clicks", "reach", "frequency", "cpc", "ctr", "cpm", "inline_link_clicks"}
LIST_FIELDS = {"actions", "action_values"}
INSIGHTS_FIELDS = ID_FIELDS | NUMBER_FIELDS | LIST_FIELDS | {"date_start", "date_stop"}
DEFAULT_FIELDS = ("account_id", "impressions", "spend")  # what Meta answers without `fields`
CLICK_WINDOWS = ("1d_click", "7d_click", "28d_click")


@dataclass
class Numbers:
    """Delivery numbers of one row (one ad, or a sum of ads); spend unrounded until formatted."""

    spend: float = 0.0
    impressions: int = 0
    clicks: int = 0
    reach: int = 0
    purchases: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WINDOWS, 0))
    purchase_value: dict[str, float] = field(default_factory=lambda: dict.fromkeys(WINDOWS, 0.0))
    add_to_cart: int = 0
    landing_page_views: int = 0

    def add(self, r: AdDay, skew: float = 1.0) -> None:
        self.spend += r.spend * skew
        self.impressions += r.impressions
        self.clicks += r.clicks
        self.reach += r.reach
        for w in WINDOWS:
            self.purchases[w] += r.purchases[w]
            self.purchase_value[w] += r.purchase_value[w]
        self.add_to_cart += r.add_to_cart
        self.landing_page_views += r.landing_page_views


def _counts(action_type: str, value: int, per_window: dict[str, int], windows: Sequence[str]) -> dict:
    entry = {"action_type": action_type, "value": str(value)}
    for w in windows:
        if per_window[w]:  # Meta leaves out windows with nothing attributed
            entry[w] = str(per_window[w])
    return entry


def _clicks(action_type: str, value: int, windows: Sequence[str]) -> dict:
    text = str(value)
    entry = {"action_type": action_type, "value": text}
    if windows == WINDOWS:  # the usual request: every window
        entry["1d_click"] = entry["7d_click"] = entry["28d_click"] = text
        return entry
    for w in windows:
        if w != "1d_view":  # clicks are click-attributed the moment they happen
            entry[w] = text
    return entry


def _actions(n: Numbers | AdDay, windows: Sequence[str], purchase_types: Sequence[str]) -> list[dict]:
    out = []
    if n.clicks:
        out.append(_clicks("link_click", n.clicks, windows))
    if n.landing_page_views:
        out.append(_clicks("landing_page_view", n.landing_page_views, windows))
    atc = n.add_to_cart
    if atc:
        per_window = {"1d_click": atc // 2, "7d_click": atc * 4 // 5, "28d_click": atc, "1d_view": atc // 10}
        out.append(_counts("add_to_cart", per_window["7d_click"] + per_window["1d_view"], per_window, windows))
    p = n.purchases
    if p["28d_click"] or p["1d_view"]:
        value = int(default_attribution(p))
        # the same purchases appear once per action type the account reports (e.g. `purchase` and
        # `omni_purchase`), as Meta reports them: summing action types double-counts
        purchase = _counts("purchase", value, p, windows)
        out += [{**purchase, "action_type": t} for t in purchase_types]
    return out


def _action_values(n: Numbers | AdDay, windows: Sequence[str], purchase_types: Sequence[str]) -> list[dict]:
    v = n.purchase_value
    if not (v["28d_click"] or v["1d_view"]):
        return []
    entry = {"action_type": "purchase", "value": f"{default_attribution(v):.2f}"}
    for w in windows:
        if v[w]:
            entry[w] = f"{v[w]:.2f}"
    return [{**entry, "action_type": t} for t in purchase_types]


@dataclass(frozen=True)
class Plan:
    """What a row holds, decided once per request (rows are formatted in the hot loop)."""

    ids: tuple[str, ...]
    counts: tuple[str, ...]
    ratios: tuple[str, ...]
    spend: bool
    actions: bool
    action_values: bool
    windows: tuple[str, ...]
    purchase_types: tuple[str, ...] = ("purchase", "omni_purchase")

    @classmethod
    def of(cls, fields: Sequence[str], windows: Sequence[str], purchase_types: Sequence[str]) -> Plan:
        wanted = set(fields)
        return cls(
            ids=tuple(f for f in fields if f in ID_FIELDS),
            counts=tuple(f for f in ("impressions", "clicks", "reach") if f in wanted),
            ratios=tuple(f for f in ("cpc", "ctr", "cpm", "frequency", "inline_link_clicks") if f in wanted),
            spend="spend" in wanted, actions="actions" in wanted, action_values="action_values" in wanted,
            windows=tuple(windows), purchase_types=tuple(purchase_types),
        )


def format_row(ids: dict[str, str], n: Numbers | AdDay, since: str, until: str, plan: Plan,
               spend_factor: float = 1.0) -> dict[str, Any]:
    row: dict[str, Any] = {name: ids[name] for name in plan.ids}
    spend = n.spend * spend_factor
    if plan.spend:
        row["spend"] = f"{spend:.2f}"
    for name in plan.counts:
        row[name] = str(getattr(n, name))
    for name in plan.ratios:
        if name == "cpc":
            if n.clicks:
                row[name] = f"{spend / n.clicks:.6f}"
        elif name == "ctr":
            row[name] = f"{100 * n.clicks / n.impressions:.6f}" if n.impressions else "0"
        elif name == "cpm":
            row[name] = f"{1000 * spend / n.impressions:.6f}" if n.impressions else "0"
        elif name == "frequency":
            row[name] = f"{n.impressions / n.reach:.6f}" if n.reach else "0"
        else:
            row[name] = str(n.clicks)
    if plan.actions and (actions := _actions(n, plan.windows, plan.purchase_types)):
        row["actions"] = actions
    if plan.action_values and (values := _action_values(n, plan.windows, plan.purchase_types)):
        row["action_values"] = values
    row["date_start"] = since  # Meta always includes the row's dates
    row["date_stop"] = until
    return row


def _ids(world: World, account: Account, entity: Entity | None) -> dict[str, str]:
    cache_key = entity.id if entity else account.id
    found = world.labels.get(cache_key)
    if found is not None:
        return found
    out = {"account_id": account.account_id, "account_name": account.name, "account_currency": account.currency}
    while entity is not None:
        out[f"{entity.kind}_id"] = entity.id
        out[f"{entity.kind}_name"] = entity.name
        if entity.kind == "campaign":
            out["objective"] = entity.objective
        entity = entity.parent
    world.labels[cache_key] = out
    return out


@dataclass(frozen=True)
class Query:
    """One insights request, normalised."""

    account: Account
    since: date
    until: date
    level: str
    daily: bool  # time_increment=1 (else all_days)
    fields: tuple[str, ...]
    windows: tuple[str, ...]
    drop: frozenset[date] = frozenset()  # scripted: ad-level rows missing for these days
    skew: tuple[tuple[date, float], ...] = ()  # scripted: ad-level spend multiplied on these days
    purchase_types: tuple[str, ...] | None = None  # scripted: overrides the account's own

    @property
    def reported_purchase_types(self) -> tuple[str, ...]:
        return self.account.purchase_types if self.purchase_types is None else self.purchase_types

    @property
    def days(self) -> list[date]:
        return [date.fromordinal(o) for o in range(self.since.toordinal(), self.until.toordinal() + 1)]


Position = tuple[int, int]  # (bucket: day index or 0 for all_days, item index inside the bucket)


def rows_from(world: World, query: Query, now, start: Position) -> Iterator[tuple[Position, dict[str, Any]]]:
    """Rows from `start` on, each with the position right after it. Ad x day rows are computed one by one;
    aggregated levels are computed one bucket (day, or the whole range) at a time."""
    days = query.days
    skews = dict(query.skew)
    plan = Plan.of(query.fields, query.windows, query.reported_purchase_types)
    if query.level == "ad" and query.daily:
        n_ads = world.counts(query.account)["ad"]
        for bucket in range(start[0], len(days)):
            day = days[bucket]
            if day in query.drop:
                continue
            view = DayView.at(query.account, day, now)
            if view.share <= 0.0:
                continue
            skew, text = skews.get(day, 1.0), day.isoformat()
            known = world.day(view, compute=False)  # computed already for the account totals?
            for index in range(start[1] if bucket == start[0] else 0, n_ads):
                ad = world.entity(query.account, "ad", index)
                r = known[index] if known is not None else ad_day(ad, view)
                if r is not None:
                    yield (bucket, index + 1), format_row(_ids(world, query.account, ad), r, text, text, plan, skew)
        return
    buckets = [[d] for d in days] if query.daily else [days]
    for bucket in range(start[0], len(buckets)):
        groups = aggregate(world, query, buckets[bucket], now)
        since, until = buckets[bucket][0].isoformat(), buckets[bucket][-1].isoformat()
        for index in range(start[1] if bucket == start[0] else 0, len(groups)):
            ids, numbers = groups[index]
            yield (bucket, index + 1), format_row(ids, numbers, since, until, plan)


def aggregate(world: World, query: Query, days: list[date], now) -> list[tuple[dict[str, str], Numbers]]:
    """Rows of `query.level` summed over `days`, ordered by id. Account level sums every ad (drop and
    skew scripts only touch ad-level answers, so the two levels can disagree as tests need)."""
    groups: dict[str, tuple[dict[str, str], Numbers]] = {}
    ad_level = query.level == "ad"
    skews = dict(query.skew) if ad_level else {}
    for day in days:
        if ad_level and day in query.drop:
            continue
        view = DayView.at(query.account, day, now)
        if view.share <= 0.0:
            continue
        for r in world.day(view) or ():
            if r is None:
                continue
            ad = r.ad
            owner = {"ad": ad, "adset": ad.parent, "campaign": ad.parent and ad.parent.parent}.get(query.level)
            key = owner.id if owner else query.account.id
            if key not in groups:
                groups[key] = (_ids(world, query.account, owner), Numbers())
            groups[key][1].add(r, skews.get(day, 1.0))
    if not ad_level:
        for _, numbers in groups.values():
            numbers.reach = int(numbers.reach * 0.85)  # people reached by several ads count once
    return [groups[k] for k in sorted(groups)]
