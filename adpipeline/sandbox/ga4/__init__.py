"""GA4 Data API (v1beta) emulation, mounted under /ga4 (see ../../../shared/api-notes/ga4-data-api.md).

    POST /ga4/v1beta/properties/{id}:runReport   runReport: aggregation to the requested dimensions,
                                                 limit/offset paging with rowCount, string metrics with
                                                 typed metricHeaders, YYYYMMDD dates, (other) beyond the
                                                 cardinality cap, metadata.timeZone, propertyQuota
    POST /ga4/token                              OAuth token endpoint (jwt-bearer, refresh_token)

Errors as GA4 sends them: 400 INVALID_ARGUMENT (unknown field, bad body), 401 UNAUTHENTICATED (no or
expired access token), 403 PERMISSION_DENIED (property not readable), 429 RESOURCE_EXHAUSTED (tokens per
hour / per day, concurrent requests). The last three days keep changing as the sandbox clock moves.

Admin (under /_admin/ga4, never counted or faulted):
    GET  /credentials?type=service_account|authorized_user   credentials JSON whose token_uri is this sandbox
         (&key=new: a new service-account key, which works after the first key was revoked)
    POST /revoke {"principal": "service_account"|"authorized_user", "revoked": true}   invalid_grant from now on
                                                                     (false: accepted again)
    GET|POST /quota/{id}  {"tokens_per_day", "tokens_per_hour", "concurrent_requests",
                           "consumed_per_day", "consumed_per_hour"}      limits and consumption
    POST /access/{id} {"readable": false}                  make a property answer 403 (or readable again)
    POST /properties/{id}:runReport                        the truth: every row, no auth, quota or paging
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from datetime import date, datetime, timedelta
from typing import Any

import requests
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from adpipeline.sandbox.ga4.data import ALL_DIMENSIONS, METRICS, PROPERTIES, Aggregate, Dataset, aggregate, format_metric, sort_rows
from adpipeline.sandbox.ga4.oauth import OAuthError, Principals, TokenIssuer
from adpipeline.sandbox.ga4.quota import QuotaBook, QuotaExhausted, token_cost
from adpipeline.sandbox.state import SandboxState

PREFIX = "/ga4"
MAX_LIMIT = 250_000
DEFAULT_LIMIT = 10_000
MAX_DIMENSIONS, MAX_METRICS = 9, 10
REQUEST_FIELDS = {
    "property", "dateRanges", "dimensions", "metrics", "limit", "offset", "keepEmptyRows", "returnPropertyQuota",
    "orderBys", "currencyCode", "metricAggregations", "dimensionFilter", "metricFilter", "cohortSpec", "comparisons",
}  # fmt: skip
SCHEMA_URL = "https://developers.google.com/analytics/devguides/reporting/data/v1/api-schema"
_RELATIVE = re.compile(r"^(\d+)daysAgo$")


class Ga4Error(Exception):
    STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED"}

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def response(self) -> JSONResponse:
        body = {"error": {"code": self.code, "message": self.message, "status": self.STATUS.get(self.code, "UNKNOWN")}}
        return JSONResponse(body, status_code=self.code)


class Ga4Emulation:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.store = state.storage("ga4")
        self.dataset = Dataset(state.seed, state.scale)
        self.principals = Principals.create(state.seed)
        self.issuer = TokenIssuer(self.principals, self.store)
        self.quota = QuotaBook(self.store)
        self._cache: OrderedDict[tuple, Aggregate] = OrderedDict()
        self._cache_lock = threading.Lock()

    # ---- runReport ---------------------------------------------------------------------------

    def readable(self, property_id: str) -> bool:
        profile = PROPERTIES.get(property_id)
        if profile is None:  # GA4 answers 403 for a property that does not exist, too
            return False
        override = self.store.get("access", {}).get(property_id)
        return override if override is not None else profile.readable

    def parse(self, property_id: str, body: Any, now: datetime) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise Ga4Error(400, "Invalid JSON payload received. Expected an object.")
        for name in body:
            if name not in REQUEST_FIELDS:
                raise Ga4Error(400, f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')
        try:
            dimensions = [d["name"] for d in body.get("dimensions") or []]
            metrics = [m["name"] for m in body.get("metrics") or []]
            limit = int(body.get("limit") or DEFAULT_LIMIT)
            offset = int(body.get("offset") or 0)
        except (KeyError, TypeError, ValueError):
            raise Ga4Error(400, "Invalid JSON payload received: dimensions/metrics need a name; limit and offset "
                                "are int64 values.") from None
        for name in dimensions:
            if name not in ALL_DIMENSIONS:
                raise Ga4Error(400, f"Field {name} is not a valid dimension. For a list of valid dimensions and "
                                    f"metrics, see {SCHEMA_URL}")
        for name in metrics:
            if name not in METRICS:
                raise Ga4Error(400, f"Field {name} is not a valid metric. For a list of valid dimensions and "
                                    f"metrics, see {SCHEMA_URL}")
        if not metrics and not dimensions:
            raise Ga4Error(400, "At least one dimension or metric is required.")
        if len(dimensions) > MAX_DIMENSIONS or len(metrics) > MAX_METRICS:
            raise Ga4Error(400, f"Requests are limited to {MAX_DIMENSIONS} dimensions and {MAX_METRICS} metrics.")
        if len(set(dimensions)) != len(dimensions) or len(set(metrics)) != len(metrics):
            raise Ga4Error(400, "A dimension or metric is requested twice.")
        if limit < 0 or offset < 0:
            raise Ga4Error(400, "limit and offset must be non-negative.")
        ranges = body.get("dateRanges") or []
        if len(ranges) != 1:
            raise Ga4Error(400, "The sandbox supports exactly one dateRange per request." if ranges
                           else "dateRanges is required for a report.")
        zone = PROPERTIES[property_id].zone
        today = now.astimezone(zone).date()
        start, end = (self._date(ranges[0].get(k), today) for k in ("startDate", "endDate"))
        if start > end:
            raise Ga4Error(400, f"Invalid date range: startDate {start} is after endDate {end}.")
        for spec in body.get("orderBys") or []:
            name = (spec.get("metric") or {}).get("metricName") or (spec.get("dimension") or {}).get("dimensionName")
            if name not in (*dimensions, *metrics):
                raise Ga4Error(400, f"orderBys names {name!r}, which is not a requested dimension or metric.")
        return {
            "dimensions": dimensions, "metrics": metrics, "start": start, "end": end,
            "limit": min(limit or DEFAULT_LIMIT, MAX_LIMIT), "offset": offset,
            "order_bys": body.get("orderBys") or [], "quota": bool(body.get("returnPropertyQuota", False)),
        }

    @staticmethod
    def _date(value: Any, today: date) -> date:
        if value == "today":
            return today
        if value == "yesterday":
            return today - timedelta(days=1)
        if isinstance(value, str) and (match := _RELATIVE.match(value)):
            return today - timedelta(days=int(match[1]))
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise Ga4Error(400, f"Invalid date {value!r}: use YYYY-MM-DD, today, yesterday or NdaysAgo.") from None

    def result(self, property_id: str, query: dict[str, Any], now: datetime) -> Aggregate:
        """The whole sorted result, cached while no day in the range changes (hour-level revisions)."""
        profile = PROPERTIES[property_id]
        days = [query["start"] + timedelta(days=i) for i in range((query["end"] - query["start"]).days + 1)]
        revisions = tuple(min(self.dataset.hours_into(profile, d, now), 10_000) for d in days)
        key = (property_id, tuple(query["dimensions"]), tuple(query["metrics"]), query["start"], query["end"],
               json.dumps(query["order_bys"], sort_keys=True), revisions)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        result = aggregate([(d, self.dataset.hits(property_id, d, now)) for d in days], query["dimensions"],
                           query["metrics"])
        sort_rows(result, query["order_bys"])
        with self._cache_lock:
            self._cache[key] = result
            while len(self._cache) > 16:
                self._cache.popitem(last=False)
        return result

    def response(self, property_id: str, query: dict[str, Any], result: Aggregate, rows: list) -> dict[str, Any]:
        profile = PROPERTIES[property_id]
        body: dict[str, Any] = {
            "dimensionHeaders": [{"name": d} for d in query["dimensions"]],
            "metricHeaders": [{"name": m, "type": METRICS[m].type} for m in query["metrics"]],
        }
        if rows:  # proto3 JSON: empty fields are left out (an empty report has neither rows nor rowCount)
            body["rows"] = [
                {"dimensionValues": [{"value": v} for v in dims],
                 "metricValues": [{"value": format_metric(v)} for v in result.metric_values(acc)]}
                for dims, acc in rows
            ]
        if result.rows:
            body["rowCount"] = len(result.rows)
        metadata: dict[str, Any] = {"currencyCode": profile.currency, "timeZone": profile.time_zone}
        if result.data_loss:
            metadata["dataLossFromOtherRow"] = True
        body["metadata"] = metadata
        body["kind"] = "analyticsData#runReport"
        return body

    def run_report(self, property_id: str, authorization: str | None, raw: bytes) -> dict[str, Any]:
        now = self.state.now()
        if self.issuer.principal_for(authorization, now) is None:
            raise Ga4Error(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                                "login cookie or other valid authentication credential.")
        if not self.readable(property_id):
            raise Ga4Error(403, "User does not have sufficient permissions for this property. To learn more about "
                                "Property ID, see https://developers.google.com/analytics/devguides/reporting/data/v1/property-id.")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise Ga4Error(400, "Invalid JSON payload received.") from None
        query = self.parse(property_id, body, now)
        try:
            self.quota.enter(property_id)
        except QuotaExhausted as exc:
            raise Ga4Error(429, str(exc)) from None
        try:
            result = self.result(property_id, query, now)
            page = result.rows[query["offset"] : query["offset"] + query["limit"]]
            cost = token_cost(result.scanned, len(page))
            try:
                self.quota.charge(property_id, now, cost)
            except QuotaExhausted as exc:
                raise Ga4Error(429, str(exc)) from None
            response = self.response(property_id, query, result, page)
            if query["quota"]:  # as Google documents it: `consumed` by THIS request, `remaining` after it
                response["propertyQuota"] = self.quota.snapshot(property_id, now, request_cost=cost)
            return response
        finally:
            self.quota.leave(property_id)

    def truth(self, property_id: str, raw: bytes) -> dict[str, Any]:
        now = self.state.now()
        if property_id not in PROPERTIES:
            raise Ga4Error(403, f"property {property_id} does not exist in the sandbox")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise Ga4Error(400, "Invalid JSON payload received.") from None
        query = self.parse(property_id, body, now)
        result = self.result(property_id, query, now)
        return self.response(property_id, query, result, result.rows)


def routes(state: SandboxState) -> list[BaseRoute]:
    emulation = _emulation(state)

    async def run_report(request: Request) -> JSONResponse:
        property_id = request.path_params["property_id"]
        raw = await request.body()
        try:
            body = await run_in_threadpool(emulation.run_report, property_id, request.headers.get("authorization"), raw)
        except Ga4Error as exc:
            return exc.response()
        return JSONResponse(body)

    async def token(request: Request) -> JSONResponse:
        try:
            body = emulation.issuer.exchange(await request.body(), str(request.url), state.now())
        except OAuthError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return [
        Route("/v1beta/properties/{property_id}:runReport", run_report, methods=["POST"]),
        Route("/token", token, methods=["POST"]),
    ]


def admin_routes(state: SandboxState) -> list[BaseRoute]:
    emulation = _emulation(state)

    async def credentials(request: Request) -> JSONResponse:
        kind = request.query_params.get("type", "service_account")
        token_uri = f"{request.url.scheme}://{request.url.netloc}{PREFIX}/token"
        if kind == "service_account":
            key = emulation.issuer.new_key() if request.query_params.get("key") == "new" else None
            return JSONResponse(emulation.principals.service_account_info(token_uri, key))
        if kind == "authorized_user":
            return JSONResponse(emulation.principals.authorized_user_info(token_uri))
        return JSONResponse({"error": "type must be service_account or authorized_user"}, status_code=400)

    async def revoke(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            emulation.issuer.revoke(str(body.get("principal")), revoked=bool(body.get("revoked", True)))
        except (ValueError, AttributeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"revoked": sorted(emulation.issuer.revoked())})

    async def quota(request: Request) -> JSONResponse:
        property_id = request.path_params["property_id"]
        if request.method == "POST":
            try:
                return JSONResponse(emulation.quota.set(property_id, state.now(), await request.json()))
            except (ValueError, TypeError, AttributeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(emulation.quota.snapshot(property_id, state.now()))

    async def access(request: Request) -> JSONResponse:
        property_id = request.path_params["property_id"]
        readable = bool((await request.json()).get("readable", True))
        emulation.store.setdefault("access", {})[property_id] = readable
        return JSONResponse({"property_id": property_id, "readable": readable})

    async def truth(request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            body = await run_in_threadpool(emulation.truth, request.path_params["property_id"], raw)
        except Ga4Error as exc:
            return exc.response()
        return JSONResponse(body)

    return [
        Route("/credentials", credentials, methods=["GET"]),
        Route("/revoke", revoke, methods=["POST"]),
        Route("/quota/{property_id}", quota, methods=["GET", "POST"]),
        Route("/access/{property_id}", access, methods=["POST"]),
        Route("/properties/{property_id}:runReport", truth, methods=["POST"]),
    ]


_EMULATIONS: dict[int, Ga4Emulation] = {}


def _emulation(state: SandboxState) -> Ga4Emulation:
    """One emulation per sandbox state (routes and admin routes share it, and its key)."""
    if id(state) not in _EMULATIONS:
        _EMULATIONS[id(state)] = Ga4Emulation(state)
    return _EMULATIONS[id(state)]


def demo_environment(base_url: str) -> dict[str, str]:
    """Environment pointing the pipeline at a running sandbox: the API URL and the sandbox's
    service-account credentials (a throwaway key made at sandbox start; its token_uri is the sandbox)."""
    base_url = base_url.rstrip("/")
    response = requests.get(f"{base_url}/_admin/ga4/credentials", params={"type": "service_account"}, timeout=10)
    response.raise_for_status()
    return {"GA4_DATA_API_URL": f"{base_url}{PREFIX}", "GA4_CREDENTIALS": json.dumps(response.json())}
