"""Breezeway public API emulation, mounted at /breezeway (see ../shared/api-notes/breezeway-api.md).

    POST /public/auth/v1/            {"client_id","client_secret"} -> {"access_token","refresh_token"} (JWTs;
                                     `exp` claim: access 24 h, refresh 30 days; no expires_in)
    POST /public/auth/v1/refresh     Authorization: JWT <refresh_token> -> a new pair; the refresh token
                                     ROTATES (a used one is refused with 401)
         both: 1 request per minute per client and endpoint -> 429, Retry-After + {"error","retry_after"}
    GET  /public/inventory/v1/property              paged envelope {limit,page,total_pages,total_results,results}
    GET  /public/inventory/v1/property/{id}         one property, 404 {"message":"Not found"}
    GET  /public/inventory/v1/reservation           paged; filters property_id[], checkin_date_*, checkout_date_*,
                                                    created_at_*, updated_at_* (lt|le|gt|ge). With NO date
                                                    filter only stays with checkout_date >= today (company zone)
    GET  /public/inventory/v1/task/?home_id=     a property's tasks (400 without home_id/reference_property_id);
                                                    ranges updated_at|created_at|scheduled_date|finished_at=
                                                    "YYYY-MM-DD,YYYY-MM-DD", type_department; created_at,
                                                    started_at, finished_at NAIVE local, updated_at +00:00,
                                                    rate_paid and costs "120.00 USD"; paged envelope
    GET  /public/inventory/v1/people?status=     bare array, no paging (no status -> active only, ASSUMED)
    GET  /public/inventory/v1/supplies           paged; the envelope has only limit, page, results
    GET  /public/inventory/v1/task/tags          bare array
Every data request needs `Authorization: JWT <access_token>` (any other scheme, a bad signature or an
expired token -> 401; expired says "Signature has expired"); a company_id other than the token's -> 403.
More concurrent requests per client than `max_concurrent_per_client` -> the proxy's HTML 403 page.

Data: 8 companies (the seed system's regions), ~4,400 properties, ~58,000 stays and ~85,000 tasks at scale
1.0, built lazily per company from the seed; stays are created, modified, cancelled and touched after
checkout as the sandbox clock moves; tasks progress (created -> in progress -> finished, costs entered
later), and the clean of a cancelled stay is deleted upstream (see `data.py`).

Admin (under /_admin/breezeway, never counted):
    GET|POST /settings                 {"max_concurrent_per_client": n, "latency_ms": x}
    GET  /stats                        auth calls by endpoint, auth 429s, proxy 403s, peak concurrency per client
    GET  /companies                    per company: id, code, time zone, visible properties and stays
    GET  /reservations?company_id=[&checkout_date=]   stays as the API shows them now (access codes included;
                                          without checkout_date: every one it serves)
    GET|POST|DELETE /reservations/{id} read / change upstream ({"set": {...}}, bumps updated_at) / delete
    DELETE /properties/{id}            delete a property upstream
    DELETE /{tasks|people|supplies|tags}/{id}   delete one upstream;  GET /tasks/{id}  a task as shown now
    POST /vanish                       {"kind", "company_id", "share"}: a share of a company's items disappears
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute

from adpipeline.sandbox.breezeway.api import BreezewayEmulation, build_admin_routes, build_routes
from adpipeline.sandbox.breezeway.data import COMPANIES, client_id, client_secret
from adpipeline.sandbox.state import SandboxState

PREFIX = "/breezeway"

_emulations: dict[int, BreezewayEmulation] = {}


def _emulation(state: SandboxState) -> BreezewayEmulation:
    if id(state) not in _emulations:
        _emulations[id(state)] = BreezewayEmulation(state)
    return _emulations[id(state)]


def routes(state: SandboxState) -> list[BaseRoute]:
    return build_routes(_emulation(state))


def admin_routes(state: SandboxState) -> list[BaseRoute]:
    return build_admin_routes(_emulation(state))


def demo_environment(base_url: str, regions: Iterable[Any] = ()) -> dict[str, str]:
    """Env vars pointing the pipeline at this emulation: the API URL and, per region given (anything with
    company_id, client_id_var and client_secret_var: the caller's config, which the sandbox never reads),
    the sandbox's demo credentials for its company (not secrets: only the sandbox accepts them)."""
    env = {"BREEZEWAY_API_URL": f"{base_url.rstrip('/')}{PREFIX}"}
    for region in regions:
        env[region.client_id_var] = client_id(region.company_id)
        env[region.client_secret_var] = client_secret(region.company_id)
    return env


__all__ = ["COMPANIES", "PREFIX", "admin_routes", "demo_environment", "routes"]
