"""Meta Marketing API client on the shared HTTP machinery, and typed parsing of what it returns.

What is Meta-specific lives here and nowhere else:
  - classification of the error envelope's codes (`classify`);
  - proactive slow-down from the three usage headers (`throttle`), and waiting what a refusal advertises;
  - the access token on every call, including `paging.next` URLs that carry an older one (`prepare`);
  - cursor paging that trusts only `next` (short and empty pages are normal), shrinking `limit` when
    Meta says "reduce the amount of data" and resuming at the same cursor;
  - insights windows: synchronous for short windows, async report jobs for long ones or when a sync call
    times out, polled until "Job Completed" (100 % while "Job Running" is not done);
  - parsing: numbers arrive as strings, timestamps as `2024-03-12T15:02:47-0700`, conversions inside
    `actions` / `action_values` keyed by attribution window.
"""

from __future__ import annotations

import copy
import enum
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from psycopg.types.json import Jsonb

from adpipeline.config import DEFAULT_PURCHASE_ACTION_TYPES
from adpipeline.http import ApiClient, ApiError, ErrorKind, RequestSpec, fastjson, parse_retry_after, register_secret
from adpipeline.warehouse.tokens import api_origin as _origin


log = logging.getLogger(__name__)

ATTRIBUTION_WINDOWS = ("1d_click", "7d_click", "28d_click", "1d_view")
# A conversion is a purchase, which Meta reports under overlapping action types (`omni_purchase`, `purchase`,
# `offsite_conversion.fb_pixel_purchase`...): the first type present from an ordered preference list (config,
# per account) is the row's conversions; summing types double-counts.
PURCHASE_ACTION_TYPES = DEFAULT_PURCHASE_ACTION_TYPES
INSIGHTS_FIELDS = (
    "account_id", "account_currency", "campaign_id", "adset_id", "ad_id", "date_start", "date_stop",
    "spend", "impressions", "clicks", "reach", "actions", "action_values",
)  # fmt: skip
ACCOUNT_TOTALS_FIELDS = ("account_id", "account_currency", "date_start", "date_stop", "spend", "impressions",
                         "clicks", "reach", "actions", "action_values")
ACCOUNT_FIELDS = ("id", "account_id", "name", "currency", "timezone_name", "account_status")
ENTITY_FIELDS = {
    "campaigns": ("id", "account_id", "name", "objective", "status", "configured_status", "effective_status",
                  "buying_type", "daily_budget", "created_time", "updated_time", "start_time", "stop_time"),
    "adsets": ("id", "account_id", "campaign_id", "name", "status", "configured_status", "effective_status",
               "daily_budget", "billing_event", "optimization_goal", "created_time", "updated_time", "start_time",
               "end_time"),
    "ads": ("id", "account_id", "campaign_id", "adset_id", "name", "status", "configured_status",
            "effective_status", "creative", "created_time", "updated_time"),
}
# Deleted and archived objects are listed only when asked for by status.
ALL_STATUSES = ("ACTIVE", "PAUSED", "DELETED", "ARCHIVED", "CAMPAIGN_PAUSED", "ADSET_PAUSED", "IN_PROCESS",
                "WITH_ISSUES", "PENDING_REVIEW", "DISAPPROVED", "PREAPPROVED", "PENDING_BILLING_INFO")

AUTH_CODES = frozenset({102, 104, 190})
THROTTLE_CODES = frozenset({4, 17, 32, 341, 613, *range(80000, 80015)})
PERMISSION_CODES = frozenset({3, 10, *range(200, 300)})
TRANSIENT_CODES = frozenset({1, 2})
TOKEN_DEAD = {458: "the app is not installed", 459: "the user is checkpointed", 460: "the password changed",
              463: "the token expired", 464: "the user is unconfirmed", 467: "the token is invalid or logged out"}


class Resize(enum.Enum):
    """What an oversized request needs (Meta's "too much data" and timeout errors)."""

    SHRINK_PAGE = "shrink the page"  # code 1 "Please reduce the amount of data you're asking for"
    SPLIT_WINDOW = "split the date window"  # 100/1487534 too much data per call
    USE_ASYNC = "use an async report"  # 100/1504018, 2/1504038 timeouts


def resize_hint(error: ApiError) -> Resize | None:
    return _resize(error.code, error.subcode, error.message)


def _resize(code: Any, subcode: Any, message: str) -> Resize | None:
    code, subcode = _int(code), _int(subcode)
    if code == 1 and "reduce the amount of data" in message.lower():
        return Resize.SHRINK_PAGE
    if code == 100 and subcode == 1487534:
        return Resize.SPLIT_WINDOW
    if (code, subcode) in ((100, 1504018), (2, 1504038)):
        return Resize.USE_ASYNC
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Usage:
    """The worst of the three usage headers: percent used, and seconds to wait according to them."""

    percent: float = 0.0
    regain_seconds: float = 0.0  # estimated_time_to_regain_access (minutes in the header)
    reset_seconds: float = 0.0  # X-Ad-Account-Usage reset_time_duration

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Usage:
        percent = regain = reset = 0.0

        def pct(entry: Mapping[str, Any], *names: str) -> float:
            return max((float(entry.get(n) or 0) for n in names), default=0.0)

        app = _header_json(headers, "X-App-Usage")
        if isinstance(app, dict):
            percent = max(percent, pct(app, "call_count", "total_cputime", "total_time"))
        account = _header_json(headers, "X-Ad-Account-Usage")
        if isinstance(account, dict):
            percent = max(percent, pct(account, "acc_id_util_pct"))
            reset = float(account.get("reset_time_duration") or 0)
        buc = _header_json(headers, "X-Business-Use-Case-Usage")
        if isinstance(buc, dict):
            for entries in buc.values():
                for entry in entries if isinstance(entries, list) else []:
                    percent = max(percent, pct(entry, "call_count", "total_cputime", "total_time"))
                    regain = max(regain, 60.0 * float(entry.get("estimated_time_to_regain_access") or 0))
        return cls(percent, regain, reset)


def _header_json(headers: Mapping[str, str], name: str) -> Any:
    raw = headers.get(name)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


class MetaClient(ApiClient):
    """Graph API client. `graph_url` includes the version (`https://graph.facebook.com/v24.0`)."""

    source = "meta"

    def __init__(
        self,
        graph_url: str,
        access_token: str,
        *,
        page_limit: int = 1000,
        min_page_limit: int = 25,
        slow_down_at: float = 75.0,
        default_throttle_wait: float = 60.0,
        sync_max_days: int = 7,
        async_poll_seconds: float = 5.0,
        async_timeout_seconds: float = 1800.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(graph_url, **kwargs)
        register_secret(access_token)  # masked everywhere from now on, however it is formatted
        self._token = access_token
        self.page_limit = page_limit
        self.min_page_limit = min_page_limit
        self.slow_down_at = slow_down_at
        self.default_throttle_wait = default_throttle_wait
        self.sync_max_days = sync_max_days
        self.async_poll_seconds = async_poll_seconds
        self.async_timeout_seconds = async_timeout_seconds
        # what the run reports in its metadata
        self.throttle_pauses = 0
        self.throttle_seconds = 0.0
        self.page_shrinks = 0
        self.async_jobs = 0
        # called with the AUTH error when Meta refuses the token (the resource marks it in the token store)
        self.on_auth_rejected: Callable[[ApiError], None] | None = None
        # a refused token is refused for every later call too: none is sent (parallel windows, no storm);
        # and the first call goes alone, so a dead token is asked once, not once per thread
        self.refused: ApiError | None = None
        self._said_refused = False
        self.one_at_a_time = True

    # ---- hooks -------------------------------------------------------------------------------------

    def prepare(self, spec: RequestSpec) -> RequestSpec:
        if self.refused is not None:
            raise copy.copy(self.refused)
        if spec.params is None and _ABSOLUTE(spec.url):
            # a `paging.next` URL repeats every parameter, including the token it was issued with; the token
            # only ever goes to the host it belongs to, whatever URL an answer names
            if _origin(spec.url) != _origin(self.base_url):
                raise ApiError(ErrorKind.BAD_PAYLOAD, f"a paging URL points at another host ({_origin(spec.url)}); "
                               "the token is not sent there", source=self.source)
            return spec.replace(url=_with_query(spec.url, access_token=self._token))
        return spec.replace(params={**(spec.params or {}), "access_token": self._token})

    def admit(self) -> None:
        if self.refused is not None:  # refused while this call waited for its turn: it is not sent
            raise copy.copy(self.refused)

    def auth_refused(self, spec: RequestSpec, error: ApiError) -> None:
        with self._lock:
            said, self._said_refused = self._said_refused, True
        if self.refused is None:
            self.refused = error
        if not said and self.on_auth_rejected is not None:  # the store is told once
            self.on_auth_rejected(error)

    def classify(self, response: requests.Response) -> ApiError | None:
        status = response.status_code
        if status < 400:
            return None  # decoded (and a cut-off body retried) by the shared client's request_json
        message, code, subcode = self.error_details(response)
        error = _error_body(response)
        code_i, subcode_i = _int(code), _int(subcode)
        retry_after = None
        if code_i in AUTH_CODES:
            kind = ErrorKind.AUTH
            why = TOKEN_DEAD.get(subcode_i or 0, "the token was rejected")
            if subcode_i == 463:  # the same sentence the token store's verdict gives (auth.py, resources.py)
                message = f"Meta token expired: manual re-authentication required. {message}"
            else:
                message = f"Meta access token unusable ({why}): manual re-authentication required. {message}"
        elif code_i in THROTTLE_CODES:
            kind = ErrorKind.THROTTLED
            usage = Usage.from_headers(response.headers)
            # what the API says, most specific first: its Retry-After, then the usage headers; a guess only without
            retry_after = (parse_retry_after(response.headers.get("Retry-After")) or usage.regain_seconds
                           or usage.reset_seconds or self.default_throttle_wait)
        elif _resize(code, subcode, message):
            kind = ErrorKind.BAD_REQUEST  # not retried as is: the caller resizes the request
        elif code_i in PERMISSION_CODES:
            kind = ErrorKind.PERMISSION
        elif error.get("is_transient") is True or code_i in TRANSIENT_CODES or (code_i is None and status >= 500):
            kind = ErrorKind.TRANSIENT
        elif code_i is None:
            return super().classify(response)  # not a Graph envelope (a proxy page...): by HTTP status
        else:
            kind = ErrorKind.BAD_REQUEST
        verdict = ApiError(kind, message, status=status, code=code, subcode=subcode, retry_after=retry_after)
        if kind is ErrorKind.AUTH and self.refused is None:
            self.refused = verdict  # still inside this call's turn: no call waiting for one is sent after it
        return verdict

    def call(self, spec: RequestSpec, *, scope: str | None = None) -> Any:
        """Send one request (retried, classified, throttled) and return its decoded JSON."""
        return self.request_json(spec.method, spec.url, params=spec.params, json=spec.json, headers=spec.headers,
                                 scope=scope)

    def throttle(self, response: requests.Response) -> None:
        """Slow down before Meta refuses: above `slow_down_at` percent pause a growing share of the time
        the headers say usage needs to reset; a blocked use case (regain time) is waited out entirely.
        The pause holds every thread of this client, and above `slow_down_at` calls go one at a time, so
        parallel windows cannot overshoot the limit together."""
        usage = Usage.from_headers(response.headers)
        pause = usage.regain_seconds
        self.one_at_a_time = usage.percent >= self.slow_down_at
        if self.one_at_a_time:
            share = min(1.0, (usage.percent - self.slow_down_at) / max(1.0, 95.0 - self.slow_down_at))
            pause = max(pause, share * (usage.reset_seconds or self.default_throttle_wait))
        if pause > 0:
            with self._lock:
                self.throttle_pauses += 1
                self.throttle_seconds += pause
            self.log.info("meta usage at %.0f%%: pausing %.1fs before the next call", usage.percent, pause)
            self.hold(pause)

    # ---- listings ----------------------------------------------------------------------------------

    def rows(self, path: str, params: dict[str, Any], *, scope: str | None = None,
             escalate: frozenset[Resize] = frozenset()) -> Iterator[dict[str, Any]]:
        """Every row of a cursor-paged edge. Only the absence of `paging.next` ends it. An oversized page
        is asked again with half the limit at the same cursor; hints in `escalate` are raised instead
        while nothing has been yielded (the caller then splits the window or goes async)."""
        spec: RequestSpec | None = RequestSpec("GET", path, {**params, "limit": params.get("limit", self.page_limit)})
        first = True
        while spec is not None:
            try:
                payload = self.call(spec, scope=scope)
            except ApiError as error:
                hint = resize_hint(error)
                if hint is None or (first and hint in escalate):
                    raise
                spec = self._shrunk(spec, error)
                continue
            if not isinstance(payload, dict) or not isinstance(payload.get("data", []), list):
                raise ApiError(ErrorKind.BAD_PAYLOAD, f"expected {{data: [...]}} from {path}", source=self.source,
                               scope=scope)
            rows = payload.get("data") or []
            if rows:
                first = False
            yield from rows
            following = (payload.get("paging") or {}).get("next")
            spec = RequestSpec("GET", str(following)) if following else None

    def _shrunk(self, spec: RequestSpec, error: ApiError) -> RequestSpec:
        current = int((spec.params or {}).get("limit") or _query(spec.url).get("limit") or self.page_limit)
        if current <= self.min_page_limit:
            raise error
        smaller = max(self.min_page_limit, current // 2)
        self.page_shrinks += 1
        self.log.info("meta asked for less data per call (%s): limit %d -> %d", error.describe(), current, smaller)
        if spec.params is not None:
            return spec.replace(params={**spec.params, "limit": smaller})
        return spec.replace(url=_with_query(spec.url, limit=str(smaller)))

    def ad_accounts(self, fields: tuple[str, ...] = ACCOUNT_FIELDS) -> Iterator[dict[str, Any]]:
        return self.rows("me/adaccounts", {"fields": ",".join(fields)}, scope="me")

    def entities(self, account_id: str, edge: str, *, updated_since: datetime | None = None,
                 statuses: tuple[str, ...] = ALL_STATUSES, fields: tuple[str, ...] | None = None,
                 scope: str | None = None) -> Iterator[dict[str, Any]]:
        """Campaigns, adsets or ads of an account, any status; with `updated_since`, only those updated after it."""
        level = edge.rstrip("s")
        filtering: list[dict[str, Any]] = [{"field": f"{level}.effective_status", "operator": "IN",
                                            "value": list(statuses)}]
        if updated_since is not None:
            filtering.append({"field": f"{level}.updated_time", "operator": "GREATER_THAN",
                              "value": int(updated_since.timestamp())})
        params = {"fields": ",".join(fields or ENTITY_FIELDS[edge]), "filtering": json.dumps(filtering)}
        return self.rows(f"{account_id}/{edge}", params, scope=scope or account_id)

    def insights(self, account_id: str, since: date, until: date, *, level: str = "ad",
                 fields: tuple[str, ...] = INSIGHTS_FIELDS, windows: tuple[str, ...] = ATTRIBUTION_WINDOWS,
                 mode: str = "auto", scope: str | None = None) -> Iterator[dict[str, Any]]:
        """Daily insights rows (`time_increment=1`) for since..until in the ACCOUNT's time zone.
        mode: "sync", "async", or "auto" (async above `sync_max_days`, or when a sync call times out)."""
        scope = scope or account_id
        params = {
            "level": level, "time_increment": "1", "fields": ",".join(fields),
            "time_range": json.dumps({"since": since.isoformat(), "until": until.isoformat()}),
            "action_attribution_windows": json.dumps(list(windows)),
        }
        days = (until - since).days + 1
        if mode == "async" or (mode == "auto" and days > self.sync_max_days):
            yield from self._insights_async(account_id, params, scope)
            return
        try:
            yield from self.rows(f"{account_id}/insights", params, scope=scope,
                                 escalate=frozenset({Resize.SPLIT_WINDOW, Resize.USE_ASYNC}))
        except ApiError as error:
            hint = resize_hint(error)
            if hint is Resize.SPLIT_WINDOW and days > 1:
                middle = since + timedelta(days=days // 2 - 1)
                self.log.info("meta %s: too much data for %s..%s, splitting the window", scope, since, until)
                yield from self.insights(account_id, since, middle, level=level, fields=fields, windows=windows,
                                         mode="sync", scope=scope)
                yield from self.insights(account_id, middle + timedelta(days=1), until, level=level,
                                         fields=fields, windows=windows, mode="sync", scope=scope)
            elif hint in (Resize.SPLIT_WINDOW, Resize.USE_ASYNC):
                self.log.info("meta %s: %s; running it as an async report", scope, error.describe())
                yield from self._insights_async(account_id, params, scope)
            else:
                raise

    def _insights_async(self, account_id: str, params: dict[str, Any], scope: str) -> Iterator[dict[str, Any]]:
        started = self.clock()
        job = self.call(RequestSpec("POST", f"{account_id}/insights", params), scope=scope)
        run_id = str((job or {}).get("report_run_id") or "")
        if not run_id:
            raise ApiError(ErrorKind.BAD_PAYLOAD, "async insights: no report_run_id in the answer",
                           source=self.source, scope=scope)
        self.async_jobs += 1
        while True:
            status = self.call(RequestSpec("GET", run_id), scope=scope) or {}
            state = status.get("async_status")
            if state == "Job Completed":
                break
            if state in ("Job Failed", "Job Skipped"):
                raise ApiError(ErrorKind.TRANSIENT, f"async insights report {run_id} ended with '{state}'",
                               source=self.source, scope=scope, exhausted=True)
            waited = self.clock() - started
            if waited >= self.async_timeout_seconds:
                raise ApiError(ErrorKind.TRANSIENT, f"async insights report {run_id} not completed after "
                               f"{waited:.0f}s ('{state}', {status.get('async_percent_completion')}%)",
                               source=self.source, scope=scope, exhausted=True)
            # 100 % while "Job Running" is not done: fetching now fails with 2601, so keep polling
            self.sleep(self.async_poll_seconds)
        yield from self.rows(f"{run_id}/insights", {}, scope=scope)


def _ABSOLUTE(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in changes]
    query += list(changes.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _error_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


# ---- parsing --------------------------------------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    """`2024-03-12T15:02:47-0700` -> aware UTC datetime."""
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").astimezone(timezone.utc)


def _dec(value: Any) -> Decimal | None:
    return None if value is None or value == "" else Decimal(str(value))


def _count(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


_ZERO = Decimal(0)
_WINDOW_COLUMNS = tuple((w, f"conversions_{w}", f"purchase_value_{w}") for w in ATTRIBUTION_WINDOWS)


def _action(entries: list[dict[str, Any]] | None, types: tuple[str, ...]) -> tuple[str | None, dict[str, Any]]:
    """(type, entry) of the first of `types` present; Meta leaves out actions (and windows) with nothing in them."""
    if not entries:
        return None, {}
    found = {entry.get("action_type"): entry for entry in entries}
    for action_type in types:
        if action_type in found:
            return action_type, found[action_type]
    return None, {}


def _measures(row: dict[str, Any], out: dict[str, Any], types: tuple[str, ...]) -> dict[str, Any]:
    """Add the row's money and counts to `out` (typed; conversions per attribution window)."""
    action_type, conversions = _action(row.get("actions"), types)
    value_type, values = _action(row.get("action_values"), types)
    # the type the row's conversions were read from (NULL: none of the preferred types was present)
    out["conversion_action_type"] = action_type or value_type
    out["currency"] = row.get("account_currency")
    out["spend"] = _dec(row.get("spend"))
    out["impressions"] = _count(row.get("impressions"))
    out["clicks"] = _count(row.get("clicks"))
    out["reach"] = _count(row.get("reach"))
    out["conversions"] = Decimal(conversions.get("value") or 0)
    out["purchase_value"] = Decimal(values.get("value") or 0)
    for window, conversions_column, value_column in _WINDOW_COLUMNS:
        out[conversions_column] = Decimal(conversions[window]) if window in conversions else _ZERO
        out[value_column] = Decimal(values[window]) if window in values else _ZERO
    out["payload"] = Jsonb(row, dumps=fastjson.dumps)  # the row as Meta sent it
    return out


@lru_cache(maxsize=4096)
def _day(text: str) -> date:
    return date.fromisoformat(text)


def insights_record(row: dict[str, Any], account: str,
                    purchase_types: tuple[str, ...] = PURCHASE_ACTION_TYPES) -> dict[str, Any]:
    """A level=ad daily row -> a raw_meta.ads_insights record (the row itself kept as payload)."""
    return _measures(row, {
        "account_id": account,
        "date": _day(row["date_start"]),
        "ad_id": row.get("ad_id"),
        "adset_id": row.get("adset_id"),
        "campaign_id": row.get("campaign_id"),
    }, purchase_types)


def account_insights_record(row: dict[str, Any], account: str,
                            purchase_types: tuple[str, ...] = PURCHASE_ACTION_TYPES) -> dict[str, Any]:
    """A level=account daily row -> a raw_meta.account_insights record."""
    return _measures(row, {"account_id": account, "date": _day(row["date_start"])}, purchase_types)


def entity_record(edge: str, row: dict[str, Any]) -> dict[str, Any]:
    """A campaign / adset / ad -> its raw_meta record."""
    record = {
        "id": row.get("id"),
        "account_id": f"act_{row['account_id']}" if row.get("account_id") else None,
        "name": row.get("name"),
        "status": row.get("status"),
        "configured_status": row.get("configured_status"),
        "effective_status": row.get("effective_status"),
        "created_time": parse_time(row.get("created_time")),
        "updated_time": parse_time(row.get("updated_time")),
        "payload": row,
    }
    if edge == "campaigns":
        record.update(objective=row.get("objective"), buying_type=row.get("buying_type"),
                      daily_budget_minor=_dec(row.get("daily_budget")), start_time=parse_time(row.get("start_time")),
                      stop_time=parse_time(row.get("stop_time")))
    elif edge == "adsets":
        record.update(campaign_id=row.get("campaign_id"), daily_budget_minor=_dec(row.get("daily_budget")),
                      billing_event=row.get("billing_event"), optimization_goal=row.get("optimization_goal"),
                      start_time=parse_time(row.get("start_time")), end_time=parse_time(row.get("end_time")))
    else:
        record.update(campaign_id=row.get("campaign_id"), adset_id=row.get("adset_id"),
                      creative_id=(row.get("creative") or {}).get("id"))
    return record


def account_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row.get("id"),
        "account_id": row.get("account_id"),
        "name": row.get("name"),
        "currency": row.get("currency"),
        "timezone_name": row.get("timezone_name"),
        "account_status": _count(row.get("account_status")),
        "payload": row,
    }

