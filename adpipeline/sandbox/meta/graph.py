"""The Graph API endpoints of the Meta sandbox, and the admin endpoints that script it.

    GET  /meta/{version}/me/adaccounts
    GET  /meta/{version}/act_{id}/campaigns | adsets | ads     fields, limit, after, filtering, effective_status
    GET  /meta/{version}/act_{id}/insights                     level, time_increment, time_range, fields,
                                                               action_attribution_windows, limit, after
    POST /meta/{version}/act_{id}/insights                     same parameters -> {"report_run_id": ...}
    GET  /meta/{version}/{report_run_id}                       async_status / async_percent_completion
    GET  /meta/{version}/{report_run_id}/insights              the report's rows, paged
    GET  /meta/{version}/oauth/access_token                    grant_type=fb_exchange_token, client_id,
                                                               client_secret, fb_exchange_token -> a 60-day token
    GET  /meta/{version}/debug_token                           input_token, access_token ({app_id}|{app_secret}
                                                               or a valid token) -> expiry, scopes, is_valid

Every Graph call checks the token (`access_token` parameter or `Authorization: Bearer`), charges the
usage meters (limits.py) and answers errors in Meta's envelope. Lists page with opaque cursors and an
absolute `paging.next` that repeats every parameter, access token included; some pages are short or
empty and still have `next`, and the last page sometimes has a `next` that leads to an empty page.

Admin (under /_admin/meta, never counted or faulted):
    GET|POST|DELETE /script    {"limits": {...}, "forbidden_accounts": [...], "drop": [{"account_id", "date"}],
                                "skew": [{"account_id", "date", "factor"}], "max_page_rows": n,
                                "sync_max_cells": n, "page_quirks": bool,
                                "purchase_types": {"act_..": ["offsite_conversion.fb_pixel_purchase", ..]},
                                "extra_accounts": n, "account_ads": {"act_..": n}}
                                (POST merges, DELETE resets; purchase_types: the action types an account
                                reports its purchases under, overriding its own setup; extra_accounts: n alike
                                accounts act_1000000000000{11..} of 50 ads each at scale 1, for benchmarks;
                                account_ads: an account's ads at scale 1, so one account-day alone can be
                                large, e.g. for a fault test of one big load)
    POST /tokens               {"access_token", "expires_at": iso|null (never), "data_access_expires_at": iso|null,
                                "scopes": [...], "status": "valid"|..., "type": "USER"|"SYSTEM_USER"}
    GET  /tokens               every token's expiry, scopes, status and type (token values masked)
    GET  /usage                meters, throttled responses per block
    GET  /insights             the truth: every row a full paging would return now (account_id, since,
                               until, level, time_increment, fields, windows)
    GET  /entities             every campaign/adset/ad of an account with all fields and any status
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adpipeline.sandbox.meta.insights import (
    DEFAULT_FIELDS,
    INSIGHTS_FIELDS,
    LEVELS,
    Position,
    Query,
    rows_from,
)
from adpipeline.sandbox.meta.limits import RATE_LIMIT_SUBCODE, RateLimiter
from adpipeline.sandbox.meta.world import (
    EXTRA_ACCOUNTS_MAX,
    RETIRED_WINDOWS,
    WINDOWS,
    Account,
    Entity,
    World,
    _mix,
    uniforms,
    world,
)
from adpipeline.sandbox.meta.world import accounts as with_extra_accounts
from adpipeline.http import fastjson
from adpipeline.sandbox.state import SandboxState, format_datetime, parse_datetime



DEMO_ACCESS_TOKEN = "EAASandboxDemoAccessToken0000000000000000"
DEMO_APP_ID = "1000000000000001"
DEMO_APP_SECRET = "sandbox-demo-app-secret-0000"
DEMO_USER_ID = "10000000000000042"
DEMO_SCOPES = ("ads_read", "ads_management", "business_management")
TOKEN_LIFETIME = timedelta(days=60)
MAX_HISTORY_MONTHS = 37
ENTITY_KINDS = {"campaigns": "campaign", "adsets": "adset", "ads": "ad"}
STATUS_VALUES = ("ACTIVE", "PAUSED", "DELETED", "ARCHIVED", "CAMPAIGN_PAUSED", "ADSET_PAUSED", "IN_PROCESS",
                 "WITH_ISSUES", "PENDING_REVIEW", "DISAPPROVED", "PREAPPROVED", "PENDING_BILLING_INFO")
HIDDEN_BY_DEFAULT = {"DELETED", "ARCHIVED"}
ENTITY_FIELDS = {
    "campaign": ("id", "account_id", "name", "objective", "status", "configured_status", "effective_status",
                 "buying_type", "daily_budget", "created_time", "updated_time", "start_time", "stop_time"),
    "adset": ("id", "account_id", "campaign_id", "name", "status", "configured_status", "effective_status",
              "daily_budget", "billing_event", "optimization_goal", "created_time", "updated_time", "start_time",
              "end_time"),
    "ad": ("id", "account_id", "campaign_id", "adset_id", "name", "status", "configured_status",
           "effective_status", "creative", "created_time", "updated_time"),
}
ACCOUNT_FIELDS = ("id", "account_id", "name", "currency", "timezone_name", "timezone_offset_hours_utc",
                  "account_status")
FIRST_REPORT_RUN_ID = 1571860060019548


# ---- errors -------------------------------------------------------------------------------------------


class GraphError(Exception):
    """An answer in Meta's error envelope."""

    def __init__(self, code: int, message: str, *, status: int = 400, subcode: int | None = None,
                 type_: str = "OAuthException", transient: bool = False, user_title: str | None = None,
                 user_msg: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.subcode = code, message, status, subcode
        self.type, self.transient, self.user_title, self.user_msg = type_, transient, user_title, user_msg

    def body(self, trace_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["is_transient"] = self.transient
        if self.user_title:
            error["error_user_title"] = self.user_title
        if self.user_msg:
            error["error_user_msg"] = self.user_msg
        error["fbtrace_id"] = trace_id
        return {"error": error}


def _bad_param(message: str, subcode: int | None = None) -> GraphError:
    return GraphError(100, f"(#100) {message}", subcode=subcode)


def _unknown_object(object_id: str) -> GraphError:
    return GraphError(100, f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be "
                      "loaded due to missing permissions, or does not support this operation. Please read the "
                      "Graph API documentation at https://developers.facebook.com/docs/graph-api", subcode=33,
                      type_="GraphMethodException")


# ---- the script (what tests and the demo control) --------------------------------------------------


@dataclass
class Script:
    forbidden_accounts: set[str] = field(default_factory=set)
    drop: set[tuple[str, date]] = field(default_factory=set)
    skew: dict[tuple[str, date], float] = field(default_factory=dict)
    max_page_rows: int = 5000  # a larger `limit` is "Please reduce the amount of data"
    sync_max_cells: int = 2_000_000  # days x ads above which a synchronous insights call times out
    page_quirks: bool = True
    purchase_types: dict[str, tuple[str, ...]] = field(default_factory=dict)  # account id -> reported types
    extra_accounts: int = 0  # alike accounts act_1000000000000{11..}, visible to the demo token (benchmarks)
    account_ads: dict[str, int] = field(default_factory=dict)  # account id -> its ads at scale 1 (one big scope)

    def update(self, body: dict[str, Any]) -> None:
        known = {"limits", "forbidden_accounts", "drop", "skew", "max_page_rows", "sync_max_cells", "page_quirks",
                 "purchase_types", "extra_accounts", "account_ads"}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown script keys {sorted(unknown)}; known: {sorted(known)}")
        if "forbidden_accounts" in body:
            self.forbidden_accounts = {str(a) for a in body["forbidden_accounts"]}
        if "drop" in body:
            self.drop = {(str(d["account_id"]), date.fromisoformat(d["date"])) for d in body["drop"]}
        if "skew" in body:
            self.skew = {(str(s["account_id"]), date.fromisoformat(s["date"])): float(s["factor"])
                         for s in body["skew"]}
        for name in ("max_page_rows", "sync_max_cells"):
            if name in body:
                setattr(self, name, max(1, int(body[name])))
        if "page_quirks" in body:
            self.page_quirks = bool(body["page_quirks"])
        if "extra_accounts" in body:
            extra = int(body["extra_accounts"])
            if not 0 <= extra <= EXTRA_ACCOUNTS_MAX:
                raise ValueError(f"extra_accounts must be 0..{EXTRA_ACCOUNTS_MAX}")
            self.extra_accounts = extra
        if "account_ads" in body:
            self.account_ads = {str(a): max(1, int(n)) for a, n in body["account_ads"].items()}
        if "purchase_types" in body:
            self.purchase_types = {str(a): tuple(str(t) for t in types)
                                   for a, types in body["purchase_types"].items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "forbidden_accounts": sorted(self.forbidden_accounts),
            "drop": [{"account_id": a, "date": d.isoformat()} for a, d in sorted(self.drop)],
            "skew": [{"account_id": a, "date": d.isoformat(), "factor": f} for (a, d), f in sorted(self.skew.items())],
            "max_page_rows": self.max_page_rows,
            "sync_max_cells": self.sync_max_cells,
            "page_quirks": self.page_quirks,
            "purchase_types": {a: list(t) for a, t in sorted(self.purchase_types.items())},
            "extra_accounts": self.extra_accounts,
            "account_ads": dict(sorted(self.account_ads.items())),
        }


@dataclass
class TokenInfo:
    expires_at: datetime | None  # None: never expires (system user)
    scopes: tuple[str, ...] = DEMO_SCOPES
    status: str = "valid"  # valid | invalidated (password changed, logged out...)
    subcode: int | None = None  # reported with code 190 when invalidated (460 password changed, 467 logged out)
    user_id: str = DEMO_USER_ID
    type: str = "USER"
    issued_at: datetime | None = None
    data_access_expires_at: datetime | None = None


@dataclass
class Job:
    id: int
    query: Query
    as_of: datetime  # rows are computed as of the job's creation
    steps: int  # polls spent running before percent reaches 100
    stuck_at_100: int  # further polls reporting 100% while still "Job Running" (the quirk)
    polls: int = 0

    def status(self) -> tuple[str, int]:
        if self.polls <= 1:
            return "Job Not Started", 0
        if self.polls == 2:
            return "Job Started", 0
        running = self.polls - 2
        if running <= self.steps:
            return "Job Running", min(100, round(100 * running / self.steps))
        if running <= self.steps + self.stuck_at_100:
            return "Job Running", 100
        return "Job Completed", 100


class MetaSandbox:
    """The Meta emulation's mutable state, kept in `state.storage("meta")` so `/_admin/reset` clears it."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    @property
    def store(self) -> dict[str, Any]:
        store = self.state.storage("meta")
        if not store:  # first use after start or reset
            now = self.state.now()
            store.update(
                script=Script(),
                limiter=RateLimiter(),
                tokens={DEMO_ACCESS_TOKEN: TokenInfo(expires_at=now + TOKEN_LIFETIME, issued_at=now,
                                                     data_access_expires_at=now + timedelta(days=90))},
                jobs={},
                next_job=FIRST_REPORT_RUN_ID,
                traces=0,
            )
        return store

    @property
    def script(self) -> Script:
        return self.store["script"]

    @property
    def limiter(self) -> RateLimiter:
        return self.store["limiter"]

    @property
    def tokens(self) -> dict[str, TokenInfo]:
        return self.store["tokens"]

    @property
    def world(self) -> World:
        return world(self.state.seed, self.state.scale)

    def trace_id(self) -> str:
        self.store["traces"] += 1
        raw = _mix(self.state.seed * 1_000_003 + self.store["traces"])
        return base64.b64encode(raw.to_bytes(8, "big")).decode().rstrip("=")

    # -- checks every Graph call goes through --------------------------------------------------------

    def check_token(self, token: str | None) -> TokenInfo:
        if not token:
            raise GraphError(104, "An access token is required to request this resource.")
        info = self.tokens.get(token)
        if info is None:
            raise GraphError(190, "Invalid OAuth access token - Cannot parse access token")
        now = self.state.now()
        if info.status != "valid":
            raise GraphError(190, "Error validating access token: The session has been invalidated because the "
                             "user changed their password or Facebook has changed the session for security "
                             "reasons.", subcode=info.subcode or 460)
        if info.expires_at is not None and now >= info.expires_at:
            raise GraphError(190, f"Error validating access token: Session has expired on {_fb_clock(info.expires_at)}."
                             f" The current time is {_fb_clock(now)}.", subcode=463)
        return info

    @property
    def accounts(self) -> tuple[Account, ...]:
        ads = self.script.account_ads
        return tuple(replace(a, base_ads=ads[a.id]) if a.id in ads else a
                     for a in with_extra_accounts(self.script.extra_accounts))

    def find_account(self, value: str) -> Account | None:
        """The account with this id (`act_...`) or number, if it exists."""
        return next((a for a in self.accounts if value in (a.id, a.account_id)), None)

    def account(self, raw_id: str, token: TokenInfo) -> Account:
        account = self.find_account(raw_id) if raw_id.isdigit() else None
        if account is None:
            raise _unknown_object(f"act_{raw_id}")
        if account.id in self.script.forbidden_accounts or not set(token.scopes) & {"ads_read", "ads_management"}:
            raise GraphError(200, "(#200) Ad account owner has NOT grant ads_management or ads_read permission",
                             status=403)
        return account


# ---- request helpers ------------------------------------------------------------------------------------

_VERSION = re.compile(r"^v\d+\.\d+$")


async def _params(request: Request) -> dict[str, str]:
    params = dict(request.query_params)
    if request.method == "POST":
        raw = await request.body()
        if raw.strip():
            content_type = request.headers.get("content-type", "")
            if "json" in content_type:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise _bad_param("The request body is not valid JSON") from None
                if not isinstance(body, dict):
                    raise _bad_param("The request body must be a JSON object")
                params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()})
            else:
                params.update(dict(parse_qsl(raw.decode(), keep_blank_values=True)))
    return params


def _token_from(request: Request, params: dict[str, str]) -> str | None:
    token = params.get("access_token")
    if token:
        return token
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() in ("bearer", "oauth") and value.strip() else None


def _fb_time(dt: datetime, account: Account) -> str:
    """Meta's timestamp shape: the account's local time with a colon-less offset, `2024-03-12T15:02:47-0700`."""
    return dt.astimezone(account.zone).strftime("%Y-%m-%dT%H:%M:%S%z")


def _fb_clock(dt: datetime) -> str:
    return dt.astimezone(timezone(timedelta(hours=-8))).strftime("%A, %d-%b-%y %H:%M:%S PST")


def _json_param(params: dict[str, str], name: str) -> Any:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return json.loads(raw)
    except ValueError:
        if name in ("fields", "action_attribution_windows", "effective_status"):
            return [part.strip() for part in raw.split(",") if part.strip()]
        raise _bad_param(f"Param {name} must be a valid JSON value") from None


def _list_param(params: dict[str, str], name: str) -> list[str] | None:
    value = _json_param(params, name)
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        raise _bad_param(f"Param {name} must be an array")
    return [str(v) for v in value]


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad_param(f"Param {name} must be an integer") from None
    if value < 1:
        raise _bad_param(f"Param {name} must be positive")
    return value


def _fields(params: dict[str, str], allowed: tuple[str, ...] | frozenset[str] | set[str], default: tuple[str, ...],
            node: str) -> tuple[str, ...]:
    requested = _list_param(params, "fields")
    if not requested:
        return default
    for name in requested:
        if name not in allowed:
            raise _bad_param(f"Tried accessing nonexisting field ({name}) on node type ({node})")
    return tuple(dict.fromkeys(requested))


# ---- cursor paging --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    page: int
    position: Position

    def encode(self) -> str:
        raw = f"{self.page}:{self.position[0]}:{self.position[1]}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str | None) -> Cursor:
        if not value:
            return cls(0, (0, 0))
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            page, bucket, item = (int(p) for p in raw.split(":"))
        except (ValueError, UnicodeDecodeError):
            raise _bad_param("Invalid cursor", subcode=1357045) from None
        return cls(page, (bucket, item))


def _page(request: Request, sandbox: MetaSandbox, rows: Callable[[Position], Iterator[tuple[Position, dict]]],
          limit: int, quirk_key: int) -> dict[str, Any]:
    """One page of a cursor-paged edge. `rows(position)` yields (position after, row) from `position` on."""
    cursor = Cursor.decode(request.query_params.get("after"))
    size, keep_next_at_end = limit, False
    if sandbox.script.page_quirks:
        u = uniforms(quirk_key * 7919 + cursor.page, 3)
        if cursor.page > 0 and u[0] < 0.08:
            size = 0  # an EMPTY page that still has `next`
        elif u[0] < 0.25:
            size = 1 + int(u[1] * max(1, limit - 1))  # a short page
        keep_next_at_end = u[2] < 0.3
    data: list[dict] = []
    position, more = cursor.position, False
    for after, row in rows(cursor.position):
        if len(data) >= size:
            more = True  # there is at least one row after this page
            break
        data.append(row)
        position = after
    paging: dict[str, Any] = {"cursors": {"before": cursor.encode(), "after": Cursor(cursor.page + 1, position).encode()}}
    if more or (keep_next_at_end and data):
        # absolute, repeating every parameter (the access token too), like graph.facebook.com
        paging["next"] = str(request.url.include_query_params(after=paging["cursors"]["after"]))
    return {"data": data, "paging": paging}


def _quirk_key(request: Request, *parts: Any) -> int:
    """Same listing, same quirks: keyed on the path and what shapes the listing, not on the limit."""
    return zlib.crc32("|".join([request.url.path, *map(str, parts)]).encode())


# ---- endpoints ------------------------------------------------------------------------------------------

def routes(state: SandboxState) -> list[BaseRoute]:
    sandbox = MetaSandbox(state)

    def graph(handler: Callable[..., Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler: version, token, usage meters, error envelope, usage headers."""

        async def endpoint(request: Request) -> Response:
            account: Account | None = None
            usage_type: str | None = None
            try:
                if not _VERSION.match(request.path_params.get("version", "")):
                    raise GraphError(2500, f"Unknown path components: /{request.path_params.get('version')}")
                params = await _params(request)
                token = sandbox.check_token(_token_from(request, params))
                account, usage_type = _resolve(request, sandbox, token)
                throttled = sandbox.limiter.charge(state.now(), account.id if account else None, usage_type)
                if throttled is not None:
                    meter = throttled.meter
                    raise GraphError(meter.code, meter.message,
                                     subcode=RATE_LIMIT_SUBCODE if meter.code != 4 else None,
                                     transient=True, user_title="Too many calls",
                                     user_msg="Reduce the call rate and retry after the usage has recovered.")
                body = await handler(request, params, token, account)
                status = 200
            except GraphError as error:
                body, status = error.body(sandbox.trace_id()), error.status
            headers = sandbox.limiter.headers(state.now(), account.id if account else None,
                                              account.account_id if account else None)
            return Response(fastjson.dumps(body), status_code=status, media_type="application/json", headers=headers)

        return endpoint

    async def ad_accounts(request: Request, params: dict[str, str], token: TokenInfo, account: None) -> Any:
        fields = _fields(params, ACCOUNT_FIELDS, ("id",), "User")
        limit = _int_param(params, "limit", 25)
        visible = [a for a in sandbox.accounts if a.id not in sandbox.script.forbidden_accounts]

        def rows(position: Position) -> Iterator[tuple[Position, dict]]:
            for index in range(position[1], len(visible)):
                yield (0, index + 1), _account_row(visible[index], fields, state.now())

        return _page(request, sandbox, rows, limit, _quirk_key(request, fields))

    async def edge(request: Request, params: dict[str, str], token: TokenInfo, account: Account) -> Any:
        name = request.path_params["edge"]
        if name == "insights":
            query = _insights_query(params, account, sandbox, state.now())
            if request.method == "POST":
                return _start_job(sandbox, query, state.now())
            cells = len(query.days) * sandbox.world.counts(account)["ad"]
            if cells > sandbox.script.sync_max_cells:
                raise GraphError(100, "(#100) The request timed out: ask for a smaller date range, or run it as an "
                                 "asynchronous job (POST to the insights edge)", subcode=1504018)
            return _insights_page(request, sandbox, params, query, state.now())
        if request.method != "GET":
            raise GraphError(3, "(#3) Application does not have the capability to make this API call.")
        return _entities_page(request, sandbox, params, account, ENTITY_KINDS[name], state.now())

    async def report_status(request: Request, params: dict[str, str], token: TokenInfo, account: Account) -> Any:
        job = _job(sandbox, request)
        job.polls += 1
        status, percent = job.status()
        return {
            "id": str(job.id),
            "account_id": job.query.account.account_id,
            "time_ref": int(job.as_of.timestamp()),
            "time_completed": int(job.as_of.timestamp()) + 5 * job.polls if status == "Job Completed" else 0,
            "async_status": status,
            "async_percent_completion": percent,
            "date_start": job.query.since.isoformat(),
            "date_stop": job.query.until.isoformat(),
        }

    async def report_rows(request: Request, params: dict[str, str], token: TokenInfo, account: Account) -> Any:
        job = _job(sandbox, request)
        if job.status()[0] != "Job Completed":
            raise GraphError(2601, "(#2601) Error accessing adreport job.", subcode=1815107, transient=True,
                             user_title="Loading Async Ads Report Failed",
                             user_msg="Sorry, the report cannot be loaded successfully. Please check if your job "
                             "status is completed instead of failed or running before fetching the data.")
        return _insights_page(request, sandbox, params, job.query, job.as_of)

    async def oauth(request: Request) -> Response:
        return _plain(sandbox, lambda: _exchange(sandbox, request.query_params))

    async def debug(request: Request) -> Response:
        return _plain(sandbox, lambda: _debug_token(sandbox, request))

    return [
        Route("/{version}/oauth/access_token", oauth, methods=["GET"]),
        Route("/{version}/debug_token", debug, methods=["GET"]),
        Route("/{version}/me/adaccounts", graph(ad_accounts), methods=["GET"]),
        Route("/{version}/act_{account_id}/{edge:str}", graph(edge), methods=["GET", "POST"]),
        Route("/{version}/{report_run_id:int}/insights", graph(report_rows), methods=["GET"]),
        Route("/{version}/{report_run_id:int}", graph(report_status), methods=["GET"]),
    ]


# -- tokens: exchange and inspection -----------------------------------------------------------------------


def _plain(sandbox: MetaSandbox, answer: Callable[[], Any]) -> Response:
    """An endpoint outside the ad-account meters: its body, or the error envelope."""
    try:
        body, status = answer(), 200
    except GraphError as error:
        body, status = error.body(sandbox.trace_id()), error.status
    return Response(fastjson.dumps(body), status_code=status, media_type="application/json")


def _check_app(sandbox: MetaSandbox, client_id: str | None, client_secret: str | None) -> None:
    if client_id != DEMO_APP_ID:
        raise GraphError(101, "Error validating application. Invalid application ID.")
    if client_secret != DEMO_APP_SECRET:
        raise GraphError(1, "Error validating client secret.", type_="OAuthException")


def _exchange(sandbox: MetaSandbox, q: Any) -> dict[str, Any]:
    """fb_exchange_token: a valid (short- or long-lived) user token -> a new 60-day token. Expired: refused."""
    if q.get("grant_type") != "fb_exchange_token":
        raise _bad_param("Param grant_type must be fb_exchange_token")
    _check_app(sandbox, q.get("client_id"), q.get("client_secret"))
    old = q.get("fb_exchange_token")
    if not old:
        raise _bad_param("Missing parameter fb_exchange_token")
    info = sandbox.check_token(old)  # 190/463 when expired, 190/460 when invalidated
    now = sandbox.state.now()
    sandbox.store["exchanges"] = sandbox.store.get("exchanges", 0) + 1
    digest = zlib.crc32(f"{old}|{now.isoformat()}|{sandbox.store['exchanges']}".encode())
    token = f"EAASandboxLongLived{sandbox.store['exchanges']:04d}{digest:010d}"
    sandbox.tokens[token] = TokenInfo(
        expires_at=now + TOKEN_LIFETIME, scopes=info.scopes, user_id=info.user_id, type=info.type, issued_at=now,
        data_access_expires_at=info.data_access_expires_at or now + timedelta(days=90))
    return {"access_token": token, "token_type": "bearer", "expires_in": int(TOKEN_LIFETIME.total_seconds())}


def _debug_token(sandbox: MetaSandbox, request: Request) -> dict[str, Any]:
    q = request.query_params
    caller = _token_from(request, dict(q))
    app_id, sep, secret = (caller or "").partition("|")
    if sep:
        _check_app(sandbox, app_id, secret)
    else:
        sandbox.check_token(caller)  # a valid token may inspect (itself or another)
    input_token = q.get("input_token")
    if not input_token:
        raise _bad_param("The parameter input_token is required")
    info = sandbox.tokens.get(input_token)
    if info is None:
        return {"data": {"error": {"code": 190, "message": "Invalid OAuth access token - Cannot parse access token"},
                         "is_valid": False, "scopes": []}}

    def stamp(dt: datetime | None) -> int:
        return int(dt.timestamp()) if dt is not None else 0

    data: dict[str, Any] = {
        "app_id": DEMO_APP_ID, "type": info.type, "application": "adpipeline sandbox",
        "data_access_expires_at": stamp(info.data_access_expires_at), "expires_at": stamp(info.expires_at),
        "is_valid": True, "issued_at": stamp(info.issued_at), "scopes": list(info.scopes), "user_id": info.user_id,
    }
    try:
        sandbox.check_token(input_token)
    except GraphError as error:
        data["is_valid"] = False
        data["error"] = {"code": error.code, "message": error.message, "subcode": error.subcode}
    return {"data": data}


def _resolve(request: Request, sandbox: MetaSandbox, token: TokenInfo) -> tuple[Account | None, str | None]:
    """The ad account a request is about and its business-use-case usage type."""
    params = request.path_params
    if "account_id" in params:
        account = sandbox.account(params["account_id"], token)
        edge = params["edge"]
        if edge == "insights":
            return account, "ads_insights"
        if edge not in ENTITY_KINDS:
            raise GraphError(2500, f"Unknown path components: /{edge}")
        return account, "ads_management"
    if "report_run_id" in params:
        job = _job(sandbox, request)
        return sandbox.account(job.query.account.account_id, token), "ads_insights"
    return None, None


def _job(sandbox: MetaSandbox, request: Request) -> Job:
    job = sandbox.store["jobs"].get(request.path_params["report_run_id"])
    if job is None:
        raise _unknown_object(str(request.path_params["report_run_id"]))
    return job


def _start_job(sandbox: MetaSandbox, query: Query, now: datetime) -> dict[str, str]:
    job_id = sandbox.store["next_job"]
    sandbox.store["next_job"] += 1
    cells = len(query.days) * sandbox.world.counts(query.account)["ad"]
    u = uniforms(job_id ^ sandbox.state.seed, 1)[0]
    steps = min(8, 2 + cells // 20_000)
    sandbox.store["jobs"][job_id] = Job(job_id, query, now, steps=steps, stuck_at_100=1 + int(u * 2))
    return {"report_run_id": str(job_id)}


def _account_row(account: Account, fields: tuple[str, ...], now: datetime) -> dict[str, Any]:
    offset = now.astimezone(account.zone).utcoffset() or timedelta(0)
    values = {
        "id": account.id, "account_id": account.account_id, "name": account.name, "currency": account.currency,
        "timezone_name": account.timezone_name, "timezone_offset_hours_utc": offset.total_seconds() / 3600,
        "account_status": account.account_status,
    }
    return {name: values[name] for name in ("id", *fields) if name in values}


# -- insights ----------------------------------------------------------------------------------------------


def _insights_query(params: dict[str, str], account: Account, sandbox: MetaSandbox, now: datetime) -> Query:
    level = params.get("level") or "account"
    if level not in LEVELS:
        raise _bad_param(f"Param level must be one of {{{', '.join(LEVELS)}}}")
    increment = params.get("time_increment") or "all_days"
    if increment not in ("1", "all_days"):
        raise _bad_param("The sandbox emulates time_increment 1 and all_days only")
    if params.get("breakdowns"):
        raise _bad_param("The sandbox does not emulate breakdowns")
    if any("updated_time" in str(f) for f in (_json_param(params, "filtering") or [])):
        raise _bad_param("Filtering field updated_time is invalid for insights: request the date window again")
    today = account.today(now)
    time_range = _json_param(params, "time_range")
    if time_range is None:  # Meta's default preset: the last 30 days
        since, until = today - timedelta(days=30), today - timedelta(days=1)
    else:
        try:
            since, until = date.fromisoformat(time_range["since"]), date.fromisoformat(time_range["until"])
        except (TypeError, KeyError, ValueError):
            raise _bad_param("Param time_range must be {'since':'YYYY-MM-DD','until':'YYYY-MM-DD'}") from None
    if since > until:
        raise _bad_param("Param time_range: since must not be after until")
    if until > today:
        raise _bad_param(f"Param time_range[until] {until} is in the future for this ad account "
                         f"(today is {today} in {account.timezone_name})")
    oldest = _months_before(today, MAX_HISTORY_MONTHS)
    if since < oldest:
        raise GraphError(3018, "The start date of the time range cannot be beyond 37 months from the current date")
    fields = _fields(params, INSIGHTS_FIELDS, DEFAULT_FIELDS, "AdsInsights")
    windows = _list_param(params, "action_attribution_windows") or []
    for w in windows:
        if w not in WINDOWS and w not in RETIRED_WINDOWS:
            raise _bad_param(f"Param action_attribution_windows[] has an invalid value {w!r}")
    script = sandbox.script
    return Query(
        account=account, since=since, until=until, level=level, daily=increment == "1", fields=fields,
        windows=tuple(w for w in WINDOWS if w in windows),  # 7d_view / 28d_view: silently not returned
        drop=frozenset(d for a, d in script.drop if a == account.id),
        skew=tuple((d, f) for (a, d), f in script.skew.items() if a == account.id),
        purchase_types=script.purchase_types.get(account.id),
    )


def _months_before(day: date, months: int) -> date:
    month_index = day.year * 12 + day.month - 1 - months
    return date(month_index // 12, month_index % 12 + 1, min(day.day, 28))


def _insights_page(request: Request, sandbox: MetaSandbox, params: dict[str, str], query: Query,
                   as_of: datetime) -> dict[str, Any]:
    limit = _int_param(params, "limit", 25)
    if limit > sandbox.script.max_page_rows:
        raise GraphError(1, "Please reduce the amount of data you're asking for, then retry your request", status=500)
    w = sandbox.world
    return _page(request, sandbox, lambda position: rows_from(w, query, as_of, position), limit,
                 _quirk_key(request, query.level, query.since, query.until, query.daily))


def truth_rows(sandbox: MetaSandbox, query: Query) -> list[dict[str, Any]]:
    return [row for _, row in rows_from(sandbox.world, query, sandbox.state.now(), (0, 0))]


# -- the hierarchy -----------------------------------------------------------------------------------------


def _entity_row(entity: Entity, fields: tuple[str, ...], now: datetime) -> dict[str, Any] | None:
    state = entity.state_at(now)
    if state is None:
        return None
    status, updated = state
    effective = entity.effective_status(now)
    account = entity.account
    parents = {}
    parent = entity.parent
    while parent is not None:
        parents[f"{parent.kind}_id"] = parent.id
        parent = parent.parent
    values: dict[str, Any] = {
        "id": entity.id, "account_id": account.account_id, "name": entity.name, "status": status,
        "configured_status": status, "effective_status": effective,
        "created_time": _fb_time(entity.created, account), "updated_time": _fb_time(updated, account),
        "start_time": _fb_time(entity.created, account), "daily_budget": str(entity.budget_minor),
        "objective": entity.objective, "buying_type": "AUCTION", "billing_event": "IMPRESSIONS",
        "optimization_goal": "OFFSITE_CONVERSIONS" if entity.objective == "OUTCOME_SALES" else "LINK_CLICKS",
        "creative": {"id": f"12{entity.id[2:]}"}, **parents,
    }
    if entity.end_at is not None and entity.end_at <= now:
        values["stop_time" if entity.kind == "campaign" else "end_time"] = _fb_time(entity.end_at, account)
    return {name: values[name] for name in ("id", *fields) if name in values}


def _entity_filters(params: dict[str, str], kind: str) -> tuple[list[Callable[[dict], bool]], set[str] | None]:
    """Row predicates from `filtering` and `effective_status`, and the statuses asked for (None = default)."""
    predicates: list[Callable[[dict], bool]] = []
    statuses: set[str] | None = None
    explicit = _list_param(params, "effective_status")
    if explicit is not None:
        statuses = set(explicit)
    filtering = _json_param(params, "filtering") or []
    if not isinstance(filtering, list):
        raise _bad_param("Param filtering must be an array of {field, operator, value}")
    for rule in filtering:
        if not isinstance(rule, dict) or not {"field", "operator", "value"} <= set(rule):
            raise _bad_param("Each filtering entry needs field, operator and value")
        name = str(rule["field"]).removeprefix(f"{kind}.")
        operator, value = str(rule["operator"]).upper(), rule["value"]
        if name == "updated_time" and operator in ("GREATER_THAN", "LESS_THAN"):
            try:
                bound = float(value)
            except (TypeError, ValueError):
                raise _bad_param("updated_time filtering takes a unix timestamp") from None
            if operator == "GREATER_THAN":
                predicates.append(lambda row, b=bound: row["_updated"] > b)
            else:
                predicates.append(lambda row, b=bound: row["_updated"] < b)
        elif name == "effective_status" and operator in ("IN", "NOT_IN"):
            values = {str(v) for v in (value if isinstance(value, list) else [value])}
            bad = values - set(STATUS_VALUES)
            if bad:
                raise _bad_param(f"Param effective_status has invalid values {sorted(bad)}")
            statuses = values if operator == "IN" else set(STATUS_VALUES) - values
        elif name == "id" and operator == "IN":
            wanted = {str(v) for v in (value if isinstance(value, list) else [value])}
            predicates.append(lambda row, w=wanted: row["_id"] in w)
        else:
            raise _bad_param(f"Filtering field {rule['field']} with operator {operator} is invalid")
    return predicates, statuses


def _entities_page(request: Request, sandbox: MetaSandbox, params: dict[str, str], account: Account, kind: str,
                   now: datetime) -> dict[str, Any]:
    node = {"campaign": "Campaign", "adset": "AdSet", "ad": "Ad"}[kind]
    fields = _fields(params, ENTITY_FIELDS[kind], ("id",), node)
    limit = _int_param(params, "limit", 25)
    if limit > sandbox.script.max_page_rows:
        raise GraphError(1, "Please reduce the amount of data you're asking for, then retry your request", status=500)
    predicates, statuses = _entity_filters(params, kind)
    w = sandbox.world
    count = w.counts(account)[kind]

    def rows(position: Position) -> Iterator[tuple[Position, dict]]:
        for index in range(position[1], count):
            entity = w.entity(account, kind, index)
            state = entity.state_at(now)
            if state is None:
                continue
            effective = entity.effective_status(now)
            if (effective in HIDDEN_BY_DEFAULT) if statuses is None else (effective not in statuses):
                continue
            probe = {"_id": entity.id, "_updated": state[1].timestamp()}
            if all(p(probe) for p in predicates):
                yield (0, index + 1), _entity_row(entity, fields, now)

    return _page(request, sandbox, rows, limit, _quirk_key(request, kind, fields))


def all_entities(sandbox: MetaSandbox, account: Account, kind: str) -> list[dict[str, Any]]:
    now = sandbox.state.now()
    rows = (_entity_row(e, ENTITY_FIELDS[kind], now) for e in sandbox.world.entities(account, kind))
    return [r for r in rows if r is not None]


# ---- admin ------------------------------------------------------------------------------------------------


def admin_routes(state: SandboxState) -> list[BaseRoute]:
    sandbox = MetaSandbox(state)

    async def script(request: Request) -> JSONResponse:
        try:
            if request.method == "POST":
                body = json.loads(await request.body() or b"{}")
                if "limits" in body:
                    sandbox.limiter.limits.update(body.pop("limits") or {})
                sandbox.script.update(body)
            elif request.method == "DELETE":
                sandbox.store["script"] = Script()
                sandbox.store["limiter"] = RateLimiter()
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": f"invalid script: {exc}"}, status_code=400)
        return JSONResponse({**sandbox.script.to_dict(), "limits": vars(sandbox.limiter.limits)})

    async def tokens(request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse({"tokens": [
                {"access_token": value[:8] + "...", "type": info.type, "status": info.status,
                 "expires_at": format_datetime(info.expires_at) if info.expires_at else None,
                 "data_access_expires_at": format_datetime(info.data_access_expires_at)
                 if info.data_access_expires_at else None, "scopes": list(info.scopes)}
                for value, info in sandbox.tokens.items()]})
        try:
            body = json.loads(await request.body() or b"{}")
            expires = body.get("expires_at")
            data_access = body.get("data_access_expires_at")
            sandbox.tokens[str(body["access_token"])] = TokenInfo(
                expires_at=parse_datetime(expires) if expires else None,
                scopes=tuple(body.get("scopes") or DEMO_SCOPES),
                status=str(body.get("status") or "valid"),
                subcode=body.get("subcode"),
                issued_at=state.now(),
                data_access_expires_at=parse_datetime(data_access) if data_access else None,
                type=str(body.get("type") or "USER"),
            )
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": f"invalid token: {exc}"}, status_code=400)
        return JSONResponse({"ok": True, "tokens": len(sandbox.tokens)})

    async def usage(request: Request) -> JSONResponse:
        return JSONResponse(sandbox.limiter.snapshot(state.now()))

    async def insights(request: Request) -> JSONResponse:
        q = request.query_params
        try:
            account = _admin_account(sandbox, q.get("account_id", ""))
            now = state.now()
            params = {
                "level": q.get("level", "ad"), "time_increment": q.get("time_increment", "1"),
                "time_range": json.dumps({"since": q["since"], "until": q.get("until", q["since"])}),
                "fields": q.get("fields") or ",".join(sorted(INSIGHTS_FIELDS)),
                "action_attribution_windows": q.get("windows") or ",".join(WINDOWS),
            }
            query = _insights_query(params, account, sandbox, now)
        except GraphError as error:
            return JSONResponse(error.body("admin"), status_code=400)
        except KeyError as exc:
            return JSONResponse({"error": f"missing parameter {exc}"}, status_code=400)
        return Response(fastjson.dumps({"data": truth_rows(sandbox, query), "as_of": format_datetime(state.now())}),
                        media_type="application/json")

    async def entities(request: Request) -> JSONResponse:
        q = request.query_params
        try:
            account = _admin_account(sandbox, q.get("account_id", ""))
            kind = q["kind"]
            if kind not in ENTITY_FIELDS:
                raise KeyError(kind)
        except (GraphError, KeyError) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
        return JSONResponse({"data": all_entities(sandbox, account, kind)})

    return [
        Route("/script", script, methods=["GET", "POST", "DELETE"]),
        Route("/tokens", tokens, methods=["GET", "POST"]),
        Route("/usage", usage, methods=["GET"]),
        Route("/insights", insights, methods=["GET"]),
        Route("/entities", entities, methods=["GET"]),
    ]


def _admin_account(sandbox: MetaSandbox, value: str) -> Account:
    account = sandbox.find_account(value)
    if account is not None:
        return account
    raise GraphError(100, f"unknown ad account {value!r}")
