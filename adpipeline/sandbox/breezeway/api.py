"""The Breezeway emulation's HTTP surface: auth, inventory endpoints, proxy behaviour, admin controls."""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adpipeline.sandbox.breezeway import jwt
from adpipeline.sandbox.breezeway.data import (
    COMPANIES,
    Company,
    CompanyData,
    CompanyTasks,
    Stay,
    client_secret,
    company_data,
    company_for_client,
    company_tasks,
    render_stay,
    render_supply,
    render_task,
)
from adpipeline.sandbox.state import SandboxState, format_datetime, parse_datetime

INVENTORY = "/public/inventory/v1"
ACCESS_TTL = timedelta(hours=24)
REFRESH_TTL = timedelta(days=30)
AUTH_WINDOW = 60.0  # seconds: 1 request per minute per client on each auth endpoint
DEFAULT_LIMIT, MAX_LIMIT = 100, 500  # MAX_LIMIT is ASSUMED
DEFAULT_SETTINGS: dict[str, Any] = {
    "max_concurrent_per_client": 16,  # ASSUMED: "hundreds" get the proxy's HTML 403; kept low enough to test
    "latency_ms": 0.0,  # added inside each data request (makes concurrency observable)
    "revoked_companies": [],  # API access revoked: tokens are still issued, every data call answers 401
    "access_token_exp": True,  # False: access tokens carry no `exp` claim (they still die after 24 h)
    "api_clock_skew_seconds": 0,  # the API's clock minus the sandbox clock (tokens are dated by the API's)
}
DATE_FILTERS = ("checkin_date", "checkout_date")
TIME_FILTERS = ("created_at", "updated_at")
OPS = {"lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b}
PROXY_403 = (
    "<html><head><title>403 Forbidden</title></head><body><center><h1>403 Forbidden</h1></center>"
    "<hr><center>awselb/2.0</center></body></html>"
)


def _message(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status, headers=headers)


class BadParam(ValueError):
    pass


class BreezewayEmulation:
    """One per sandbox process; mutable state lives in `state.storage("breezeway")` (cleared by reset)."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.lock = threading.Lock()
        self.key = hashlib.sha256(f"{state.seed}:breezeway-jwt".encode()).digest()
        start = state.clock.start
        self.anchor: date = start.astimezone(timezone.utc).date()

    # ---- state --------------------------------------------------------------------------------

    @property
    def store(self) -> dict[str, Any]:
        return self.state.storage("breezeway")

    def settings(self) -> dict[str, Any]:
        return self.store.setdefault("settings", dict(DEFAULT_SETTINGS))

    def stats(self) -> dict[str, Any]:
        return self.store.setdefault(
            "stats", {"generate": 0, "refresh": 0, "auth_rate_limited": 0, "proxy_403": 0, "max_in_flight": {}}
        )

    def data(self, company_id: int) -> CompanyData:
        return company_data(self.state.seed, self.state.scale, self.anchor, company_id)

    def overrides(self) -> dict[int, list[tuple[datetime, dict[str, Any]]]]:
        return self.store.setdefault("overrides", {})

    def deleted(self) -> dict[tuple[str, int], datetime]:
        return self.store.setdefault("deleted", {})

    def _bump(self) -> None:
        self.store["version"] = self.store.get("version", 0) + 1

    def tasks(self, company_id: int) -> CompanyTasks:
        return company_tasks(self.state.seed, self.state.scale, self.anchor, company_id)

    def is_deleted(self, kind: str, item_id: int, now: datetime) -> bool:
        when = self.deleted().get((kind, item_id))
        if when is not None and when <= now:
            return True
        for rule_kind, company_id, share, at in self.store.get("vanish", ()):
            if rule_kind == kind and at <= now and _company_of(kind, item_id) == company_id \
                    and _share(item_id) < share:
                return True
        return False

    # ---- auth ---------------------------------------------------------------------------------

    def _rate_limited(self, client: str, endpoint: str) -> Response | None:
        """1 request per minute per client per endpoint. Time passes by the sandbox clock or by real
        time, whichever moved more (a frozen clock does not hold the limit forever)."""
        now, mono = self.state.now(), time.monotonic()
        with self.lock:
            calls = self.store.setdefault("auth_calls", {})
            last = calls.get((client, endpoint))
            if last is not None:
                elapsed = max((now - last[0]).total_seconds(), mono - last[1])
                if elapsed < AUTH_WINDOW:
                    self.stats()["auth_rate_limited"] += 1
                    wait = max(1, math.ceil(AUTH_WINDOW - elapsed))
                    return JSONResponse({"error": "Rate limit exceeded", "retry_after": wait}, status_code=429,
                                        headers={"Retry-After": str(wait)})
            calls[(client, endpoint)] = (now, mono)
            self.stats()[endpoint] += 1
        return None

    def api_now(self) -> datetime:
        """The API's own clock, which may differ from the client's (scripted skew)."""
        return self.state.now() + timedelta(seconds=float(self.settings()["api_clock_skew_seconds"]))

    def _issue(self, company: Company, client: str) -> dict[str, str]:
        now = self.api_now()
        with self.lock:
            serial = self.store["serial"] = self.store.get("serial", 0) + 1
            common = {"sub": client, "company_id": company.id, "iat": int(now.timestamp())}
            expiry = {"exp": int((now + ACCESS_TTL).timestamp())} if self.settings()["access_token_exp"] else {}
            access = jwt.encode({**common, "type": "access", **expiry, "jti": f"a{serial}"}, self.key)
            refresh = jwt.encode({**common, "type": "refresh", "exp": int((now + REFRESH_TTL).timestamp()),
                                  "jti": f"r{serial}"}, self.key)
            self.store.setdefault("live_refresh", {})[client] = f"r{serial}"  # rotation: older ones stop working
        return {"access_token": access, "refresh_token": refresh}

    async def generate(self, request: Request) -> Response:
        try:
            body = await request.json()
            client, secret = body["client_id"], body["client_secret"]
            if not isinstance(client, str) or not isinstance(secret, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _message(400, "client_id and client_secret are required")
        limited = self._rate_limited(client, "generate")
        if limited:
            return limited
        company = company_for_client(client)
        if company is None or not hmac.compare_digest(secret, client_secret(company.id)):
            return _message(401, "Invalid client credentials")
        return JSONResponse(self._issue(company, client))

    async def refresh(self, request: Request) -> Response:
        token = _jwt_from_header(request)
        if isinstance(token, Response):
            return token
        try:
            claims = jwt.decode(token, self.key)
        except jwt.InvalidToken as exc:
            return _message(401, str(exc))
        if claims.get("type") != "refresh":
            return _message(401, "Invalid token type: a refresh token is required")
        limited = self._rate_limited(str(claims.get("sub")), "refresh")
        if limited:
            return limited
        if claims.get("exp", 0) <= self.api_now().timestamp():
            return _message(401, "Refresh token has expired")
        if self.store.get("live_refresh", {}).get(claims["sub"]) != claims.get("jti"):
            return _message(401, "Refresh token is no longer valid (already used)")
        company = COMPANIES[claims["company_id"]]
        return JSONResponse(self._issue(company, claims["sub"]))

    def authorize(self, request: Request) -> tuple[Company, str] | Response:
        token = _jwt_from_header(request)
        if isinstance(token, Response):
            return token
        try:
            claims = jwt.decode(token, self.key)
        except jwt.InvalidToken as exc:
            return _message(401, str(exc))
        if claims.get("type") != "access":
            return _message(401, "Invalid token type: an access token is required")
        expires = claims.get("exp", claims.get("iat", 0) + ACCESS_TTL.total_seconds())  # no claim: still 24 h
        if expires <= self.api_now().timestamp():
            return _message(401, "Signature has expired")
        company = COMPANIES[claims["company_id"]]
        if company.id in self.settings()["revoked_companies"]:
            return _message(401, "API access has been revoked for this company")  # no refresh fixes this
        asked = request.query_params.get("company_id")
        if asked is not None and asked != str(company.id):
            return _message(403, "You do not have permission to perform this action.")
        return company, str(claims["sub"])

    @contextmanager
    def in_flight(self, client: str) -> Iterator[bool]:
        """Concurrent requests of one client; beyond the limit the proxy answers an HTML 403."""
        with self.lock:
            counts = self.store.setdefault("in_flight", {})
            n = counts.get(client, 0) + 1
            peak = self.stats()["max_in_flight"]
            peak[client] = max(peak.get(client, 0), n)
            allowed = n <= int(self.settings()["max_concurrent_per_client"])
            if allowed:
                counts[client] = n
            else:
                self.stats()["proxy_403"] += 1
        try:
            yield allowed
        finally:
            if allowed:
                with self.lock:
                    counts[client] -= 1

    # ---- inventory ----------------------------------------------------------------------------

    def guarded(self, handler):
        """Wrap a data endpoint: auth, proxy concurrency limit, latency, 400 on bad parameters."""

        def endpoint(request: Request) -> Response:
            who = self.authorize(request)
            if isinstance(who, Response):
                return who
            company, client = who
            with self.in_flight(client) as allowed:
                if not allowed:
                    return HTMLResponse(PROXY_403, status_code=403)
                latency = float(self.settings()["latency_ms"])
                if latency:
                    time.sleep(latency / 1000)
                try:
                    return handler(request, company)
                except BadParam as exc:
                    return _message(400, str(exc))

        return endpoint

    def properties(self, request: Request, company: Company) -> Response:
        now = self.state.now()
        rows = [p for p in self.data(company.id).properties
                if p.created_at <= now and not self.is_deleted("property", p.id, now)]
        limit, page = _paging(request)
        chunk = rows[(page - 1) * limit: page * limit]
        return JSONResponse(_envelope([p.row for p in chunk], limit, page, len(rows)))

    def property(self, request: Request, company: Company) -> Response:
        now = self.state.now()
        prop = self.data(company.id).property_index.get(request.path_params["property_id"])
        if prop is None or prop.created_at > now or self.is_deleted("property", prop.id, now):
            return _message(404, "Not found")
        return JSONResponse(prop.row)

    def reservations(self, request: Request, company: Company) -> Response:
        now = self.state.now()
        filters = _reservation_filters(request, company, now)
        limit, page = _paging(request)
        matches = self._matching_stays(company, filters, now)
        chunk = matches[(page - 1) * limit: page * limit]
        overrides = self.overrides()
        rows = [render_stay(self.state.seed, s, now, overrides.get(s.id, [])) for s in chunk]
        return JSONResponse(_envelope(rows, limit, page, len(matches)))

    def _matching_stays(self, company: Company, filters: dict[str, Any], now: datetime) -> list[Stay]:
        """The stays a listing matches at `now`. The answer only changes at a stay's next event (created,
        changed, deleted) or with a scripted change (which bumps the version), so it is kept, per filter,
        until the earliest such moment: with a running clock every page of one pull is served from one scan."""
        key = (company.id, tuple(sorted((k, str(v)) for k, v in filters.items())), self.store.get("version", 0))
        with self.lock:
            cache = self.store.setdefault("matches", OrderedDict())  # in the store: emptied by a reset
            hit = cache.get(key)
            if hit is not None and hit[0] <= now < hit[1]:
                cache.move_to_end(key)
                return hit[2]
        overrides = self.overrides()
        properties = filters.pop("property_id", None)
        upcoming = [when for when in self.deleted().values() if when > now]  # a clock set back before them
        upcoming += [at for *_, at in self.store.get("vanish", ()) if at > now]
        upcoming += [when for changes in overrides.values() for when, _ in changes if when > now]
        found = []
        for stay in self.data(company.id).stays:
            if (event := stay.next_event(now)) is not None:
                upcoming.append(event)
            if not stay.visible(now) or self.is_deleted("reservation", stay.id, now):
                continue
            if properties is not None and stay.property_id not in properties:
                continue
            values = {"checkin_date": stay.checkin, "checkout_date": stay.checkout, "created_at": stay.created_at,
                      "updated_at": stay.updated_at(now)}
            for when, changes in overrides.get(stay.id, ()):
                if when <= now:
                    if "updated_at" in changes:  # scripted: an upstream clock that lies
                        values["updated_at"] = datetime.fromisoformat(changes["updated_at"])
                    else:
                        values["updated_at"] = max(values["updated_at"], when)
                    for name in DATE_FILTERS:
                        if name in changes:
                            values[name] = date.fromisoformat(changes[name])
            if all(OPS[op](values[field], bound) for (field, op), bound in filters.items()):
                found.append(stay)
        with self.lock:
            cache[key] = (now, min(upcoming, default=datetime.max.replace(tzinfo=timezone.utc)), found)
            cache.move_to_end(key)
            while len(cache) > 64:
                cache.popitem(last=False)
        return found

    def task_list(self, request: Request, company: Company) -> Response:
        """GET /task/?home_id=..: a property's tasks. Ranges are "YYYY-MM-DD,YYYY-MM-DD" (inclusive days;
        updated_at compares its UTC day, created_at/finished_at their local day)."""
        now = self.state.now()
        raw_home = request.query_params.get("home_id")
        reference = request.query_params.get("reference_property_id")
        data = self.data(company.id)
        if raw_home is None and reference is not None:
            match = next((p for p in data.properties if p.row["reference_property_id"] == reference), None)
            raw_home = str(match.id) if match else "0"
        if raw_home is None:
            raise BadParam("home_id or reference_property_id is required")
        try:
            home = int(raw_home)
        except ValueError:
            raise BadParam("Invalid home_id.") from None
        prop = data.property_index.get(home)
        if prop is None or prop.created_at > now or self.is_deleted("property", home, now):
            return _message(404, "Not found")
        ranges = {name: _day_range(request.query_params.get(name), name)
                  for name in ("updated_at", "created_at", "scheduled_date", "finished_at")}
        department = request.query_params.get("type_department")
        tasks = self.tasks(company.id)
        zone = company.zone
        found = []
        for task in tasks.by_property.get(home, []):
            if not task.visible(now) or self.is_deleted("task", task.id, now):
                continue
            if department and task.department != department:
                continue
            days = {"updated_at": task.updated_at(now).date(), "created_at": task.created_at.astimezone(zone).date(),
                    "scheduled_date": task.scheduled,
                    "finished_at": task.finished_at.astimezone(zone).date() if now >= task.finished_at else None}
            if all(r is None or (days[n] is not None and r[0] <= days[n] <= r[1]) for n, r in ranges.items()):
                found.append(task)
        limit, page = _paging(request)
        chunk = found[(page - 1) * limit: page * limit]
        rows = [render_task(self.state.seed, t, now, company, tasks,
                            data.stay_index.get(t.reservation_id) if t.reservation_id else None) for t in chunk]
        return JSONResponse(_envelope(rows, limit, page, len(found)))

    def people(self, request: Request, company: Company) -> Response:
        """A bare array, no paging; without `status` only active people (ASSUMED)."""
        now = self.state.now()
        status = request.query_params.get("status", "active")
        rows = [p for p in self.tasks(company.id).people
                if p["status"] == status and not self.is_deleted("person", p["id"], now)]
        return JSONResponse(rows)

    def supplies(self, request: Request, company: Company) -> Response:
        """Paged, but the envelope has only limit, page and results: stop at a short page."""
        now = self.state.now()
        rows = [render_supply(s, now, self.anchor) for s in self.tasks(company.id).supplies
                if not self.is_deleted("supply", s["id"], now)]
        limit, page = _paging(request)
        return JSONResponse({"limit": limit, "page": page, "results": rows[(page - 1) * limit: page * limit]})

    def task_tags(self, request: Request, company: Company) -> Response:
        now = self.state.now()
        return JSONResponse([t for t in self.tasks(company.id).tags if not self.is_deleted("tag", t["id"], now)])

    # ---- admin --------------------------------------------------------------------------------

    async def admin_settings(self, request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            unknown = set(body) - set(DEFAULT_SETTINGS)
            if unknown:
                return JSONResponse({"error": f"unknown settings {sorted(unknown)}"}, status_code=400)
            self.settings().update(body)
        return JSONResponse(self.settings())

    async def admin_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def admin_companies(self, request: Request) -> Response:
        now = self.state.now()
        out = []
        for company in COMPANIES.values():
            data = self.data(company.id)
            out.append({
                "id": company.id, "code": company.code, "timezone": company.timezone,
                "properties": sum(p.created_at <= now for p in data.properties),
                "reservations": sum(s.visible(now) for s in data.stays),
            })
        return JSONResponse(out)

    def _find_stay(self, reservation_id: int) -> tuple[Company, Stay] | None:
        company = COMPANIES.get(reservation_id // 10_000_000)
        stay = self.data(company.id).stay_index.get(reservation_id) if company else None
        return (company, stay) if stay else None

    async def admin_reservation(self, request: Request) -> Response:
        """GET: the reservation as the API would show it now (access code included: it is the truth).
        POST {"set": {...}}: change it upstream now (bumps updated_at; an "updated_at" in `set` is served as
        given, e.g. in the future: an upstream clock that lies). DELETE: delete it upstream now."""
        found = self._find_stay(request.path_params["reservation_id"])
        if found is None:
            return JSONResponse({"error": "no such reservation"}, status_code=404)
        _, stay = found
        now = self.state.now()
        if request.method == "POST":
            changes = (await request.json()).get("set") or {}
            with self.lock:
                self.overrides().setdefault(stay.id, []).append((now, dict(changes)))
                self._bump()
        elif request.method == "DELETE":
            with self.lock:
                self.deleted()[("reservation", stay.id)] = now
                self._bump()
            return JSONResponse({"deleted": stay.id, "at": format_datetime(now)})
        return JSONResponse(render_stay(self.state.seed, stay, now, self.overrides().get(stay.id, [])))

    async def admin_find_reservations(self, request: Request) -> Response:
        """GET ?company_id=&checkout_date=YYYY-MM-DD[&limit=]: stays as the API shows them now (for tests).
        Without checkout_date: every reservation the API serves the company now (the truth a full pull reaches)."""
        try:
            company = COMPANIES[int(request.query_params["company_id"])]
            checkout = request.query_params.get("checkout_date")
            checkout = date.fromisoformat(checkout) if checkout else None
            limit = int(request.query_params.get("limit", 10))
        except (KeyError, ValueError):
            return JSONResponse({"error": "company_id is required; checkout_date is YYYY-MM-DD"}, status_code=400)
        now = self.state.now()
        if checkout is None:
            overrides = self.overrides()
            return JSONResponse([render_stay(self.state.seed, s, now, overrides.get(s.id, []))
                                 for s in self._matching_stays(company, {}, now)])
        stays = [s for s in self.data(company.id).stays if s.visible(now) and s.checkout == checkout][:limit]
        return JSONResponse([render_stay(self.state.seed, s, now, self.overrides().get(s.id, [])) for s in stays])

    async def admin_delete(self, request: Request) -> Response:
        """DELETE /{kind}/{id} for tasks, people, supplies, tags: deleted upstream from now on."""
        kind = KINDS.get(request.path_params["kind"])
        if kind is None:
            return JSONResponse({"error": f"kind must be one of {', '.join(KINDS)}"}, status_code=404)
        item_id = request.path_params["item_id"]
        now = self.state.now()
        with self.lock:
            self.deleted()[(kind, item_id)] = now
            self._bump()
        return JSONResponse({"deleted": item_id, "kind": kind, "at": format_datetime(now)})

    async def admin_vanish(self, request: Request) -> Response:
        """POST {"kind": "tasks", "company_id": 8558, "share": 0.6}: a deterministic share of a company's
        items of that kind disappears upstream from now on (a mass deletion, or an upstream glitch)."""
        body = await request.json()
        try:
            kind, company_id, share = KINDS[body["kind"]], int(body["company_id"]), float(body["share"])
        except (KeyError, TypeError, ValueError):
            return JSONResponse({"error": f"need kind ({', '.join(KINDS)}), company_id and share"}, status_code=400)
        with self.lock:
            self.store.setdefault("vanish", []).append((kind, company_id, share, self.state.now()))
            self._bump()
        return JSONResponse({"ok": True})

    async def admin_task(self, request: Request) -> Response:
        """GET the task as the API shows it now."""
        task_id = request.path_params["task_id"]
        company = COMPANIES.get(task_id // 10_000_000)
        task = self.tasks(company.id).index.get(task_id) if company else None
        if task is None:
            return JSONResponse({"error": "no such task"}, status_code=404)
        data = self.data(company.id)
        stay = data.stay_index.get(task.reservation_id) if task.reservation_id else None
        return JSONResponse(render_task(self.state.seed, task, self.state.now(), company, self.tasks(company.id), stay))

    async def admin_property(self, request: Request) -> Response:
        """DELETE: delete a property upstream now."""
        pid = request.path_params["property_id"]
        company = COMPANIES.get(pid // 100_000)
        if company is None or pid not in self.data(company.id).property_index:
            return JSONResponse({"error": "no such property"}, status_code=404)
        now = self.state.now()
        with self.lock:
            self.deleted()[("property", pid)] = now
            self._bump()
        return JSONResponse({"deleted": pid, "at": format_datetime(now)})


# ---- helpers ---------------------------------------------------------------------------------------


KINDS = {"properties": "property", "reservations": "reservation", "tasks": "task", "people": "person",
         "supplies": "supply", "tags": "tag"}


def _company_of(kind: str, item_id: int) -> int:
    if kind == "property":
        return item_id // 100_000
    if kind in ("reservation", "task"):
        return item_id // 10_000_000
    if kind == "tag":
        return item_id // 100
    return item_id // 1000  # person, supply


def _share(item_id: int) -> float:
    """A stable pseudo-random position in [0, 1) for an id (which items a mass deletion takes)."""
    return int(hashlib.sha256(str(item_id).encode()).hexdigest()[:8], 16) / 16**8


def _day_range(raw: str | None, name: str) -> tuple[date, date] | None:
    if raw is None:
        return None
    try:
        low, high = (date.fromisoformat(part.strip()) for part in raw.split(","))
    except ValueError:
        raise BadParam(f'Invalid {name}: expected "YYYY-MM-DD,YYYY-MM-DD"') from None
    return low, high


def _jwt_from_header(request: Request) -> str | Response:
    header = request.headers.get("authorization", "")
    if not header:
        return _message(401, "Authentication credentials were not provided.")
    scheme, _, token = header.strip().partition(" ")
    if scheme != "JWT" or not token.strip():
        return _message(401, "Invalid Authorization header: expected 'JWT <token>'.")
    return token.strip()


def _paging(request: Request) -> tuple[int, int]:
    try:
        limit = int(request.query_params.get("limit", DEFAULT_LIMIT))
        page = int(request.query_params.get("page", 1))
    except ValueError:
        raise BadParam("Invalid page or limit.") from None
    if limit < 1 or page < 1:
        raise BadParam("Invalid page or limit.")
    return min(limit, MAX_LIMIT), page


def _envelope(rows: list[dict[str, Any]], limit: int, page: int, total: int) -> dict[str, Any]:
    return {"limit": limit, "page": page, "total_pages": max(1, math.ceil(total / limit)), "total_results": total,
            "results": rows}


def _reservation_filters(request: Request, company: Company, now: datetime) -> dict[Any, Any]:
    """{(field, op): bound} plus "property_id": set. With no date filter at all, the API's default applies:
    only stays with checkout_date >= today (in the company's time zone)."""
    filters: dict[Any, Any] = {}
    params = request.query_params
    for name in (*DATE_FILTERS, *TIME_FILTERS):
        for op in OPS:
            raw = params.get(f"{name}_{op}")
            if raw is None:
                continue
            try:
                filters[(name, op)] = date.fromisoformat(raw) if name in DATE_FILTERS else parse_datetime(
                    raw if "T" in raw else f"{raw}T00:00:00Z")
            except ValueError:
                raise BadParam(f"Invalid value for {name}_{op}: {raw!r}") from None
    if not filters:
        filters[("checkout_date", "ge")] = now.astimezone(company.zone).date()
    ids = params.getlist("property_id") + params.getlist("property_id[]")
    if ids:
        try:
            filters["property_id"] = {int(v) for raw in ids for v in raw.split(",") if v.strip()}
        except ValueError:
            raise BadParam("Invalid property_id.") from None
    return filters


def build_routes(emulation: BreezewayEmulation) -> list[BaseRoute]:
    e = emulation
    return [
        Route("/public/auth/v1/", e.generate, methods=["POST"]),
        Route("/public/auth/v1/refresh", e.refresh, methods=["POST"]),
        Route(f"{INVENTORY}/property", e.guarded(e.properties), methods=["GET"]),
        Route(f"{INVENTORY}/property/{{property_id:int}}", e.guarded(e.property), methods=["GET"]),
        Route(f"{INVENTORY}/reservation", e.guarded(e.reservations), methods=["GET"]),
        Route(f"{INVENTORY}/task/", e.guarded(e.task_list), methods=["GET"]),
        Route(f"{INVENTORY}/task/tags", e.guarded(e.task_tags), methods=["GET"]),
        Route(f"{INVENTORY}/people", e.guarded(e.people), methods=["GET"]),
        Route(f"{INVENTORY}/supplies", e.guarded(e.supplies), methods=["GET"]),
    ]


def build_admin_routes(emulation: BreezewayEmulation) -> list[BaseRoute]:
    e = emulation
    return [
        Route("/settings", e.admin_settings, methods=["GET", "POST"]),
        Route("/stats", e.admin_stats, methods=["GET"]),
        Route("/companies", e.admin_companies, methods=["GET"]),
        Route("/reservations", e.admin_find_reservations, methods=["GET"]),
        Route("/reservations/{reservation_id:int}", e.admin_reservation, methods=["GET", "POST", "DELETE"]),
        Route("/properties/{property_id:int}", e.admin_property, methods=["DELETE"]),
        Route("/tasks/{task_id:int}", e.admin_task, methods=["GET"]),
        Route("/{kind:str}/{item_id:int}", e.admin_delete, methods=["DELETE"]),
        Route("/vanish", e.admin_vanish, methods=["POST"]),
    ]
