"""The Breezeway emulation over real HTTP against the sandbox subprocess: the API-notes facts it must honour."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone

import requests

from adpipeline.sandbox import DEFAULT_CLOCK_START
from adpipeline.sandbox.breezeway.data import client_id, client_secret, company_data
from adpipeline.sandbox.process import SandboxProcess

AUTH = "/breezeway/public/auth/v1/"
REFRESH = "/breezeway/public/auth/v1/refresh"
INVENTORY = "/breezeway/public/inventory/v1"
NASHVILLE = 8558


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def generate(sandbox: SandboxProcess, company: int = NASHVILLE, secret: str | None = None) -> requests.Response:
    body = {"client_id": client_id(company), "client_secret": secret or client_secret(company)}
    return requests.post(sandbox.base_url + AUTH, json=body, timeout=10)


def get(sandbox: SandboxProcess, path: str, token: str, scheme: str = "JWT", **params) -> requests.Response:
    return requests.get(sandbox.base_url + INVENTORY + path, params=params, timeout=30,
                        headers={"Authorization": f"{scheme} {token}"})


def stats(sandbox: SandboxProcess) -> dict:
    return requests.get(sandbox.base_url + "/_admin/breezeway/stats", timeout=10).json()


def test_auth_issues_jwt_pairs_with_exp_and_limits_each_endpoint_to_one_call_a_minute(sandbox):
    first = generate(sandbox)
    assert first.status_code == 200 and set(first.json()) == {"access_token", "refresh_token"}  # no expires_in
    access, refresh = first.json()["access_token"], first.json()["refresh_token"]
    now = DEFAULT_CLOCK_START.timestamp()
    assert claims(access)["exp"] == now + 24 * 3600
    assert claims(refresh)["exp"] == now + 30 * 86400

    again = generate(sandbox)
    assert again.status_code == 429
    assert again.headers["Retry-After"] == "60"
    assert again.json() == {"error": "Rate limit exceeded", "retry_after": 60}
    assert generate(sandbox, company=8561).status_code == 200  # the limit is per client

    sandbox.admin.advance(60)
    assert generate(sandbox, secret="wrong-secret-value").status_code == 401
    assert stats(sandbox)["auth_rate_limited"] == 1


def test_jwt_scheme_expiry_and_rotating_refresh_tokens(sandbox):
    pair = generate(sandbox).json()
    assert get(sandbox, "/property", pair["access_token"], scheme="Bearer").status_code == 401
    assert get(sandbox, "/property", pair["refresh_token"]).status_code == 401  # not an access token
    assert get(sandbox, "/property", pair["access_token"], limit=1).status_code == 200
    assert get(sandbox, "/property", pair["access_token"], company_id=8561).status_code == 403

    sandbox.admin.advance(24 * 3600)
    expired = get(sandbox, "/property", pair["access_token"])
    assert (expired.status_code, expired.json()) == (401, {"message": "Signature has expired"})

    refreshed = requests.post(sandbox.base_url + REFRESH, headers={"Authorization": f"JWT {pair['refresh_token']}"})
    assert refreshed.status_code == 200
    assert get(sandbox, "/property", refreshed.json()["access_token"], limit=1).status_code == 200
    sandbox.admin.advance(61)
    reused = requests.post(sandbox.base_url + REFRESH, headers={"Authorization": f"JWT {pair['refresh_token']}"})
    assert reused.status_code == 401  # rotated: a spent refresh token is refused


def test_default_listing_hides_past_stays_and_explicit_filters_reach_them(sandbox):
    token = generate(sandbox).json()["access_token"]
    default = get(sandbox, "/reservation", token, limit=500).json()
    assert set(default) == {"limit", "page", "total_pages", "total_results", "results"}
    today = DEFAULT_CLOCK_START.date()
    assert default["results"] and all(date.fromisoformat(r["checkout_date"]) >= today for r in default["results"])

    everything = get(sandbox, "/reservation", token, checkout_date_ge="2000-01-01", limit=1).json()
    assert everything["total_results"] > 5 * default["total_results"]  # most stays are in the past
    past = get(sandbox, "/reservation", token, checkout_date_lt=str(today), limit=5).json()
    assert past["total_results"] > 0 and all(date.fromisoformat(r["checkout_date"]) < today for r in past["results"])
    assert get(sandbox, "/reservation", token, updated_at_ge="not-a-date").status_code == 400

    companies = requests.get(sandbox.base_url + "/_admin/breezeway/companies", timeout=30).json()
    assert len(companies) == 8
    assert sum(c["properties"] for c in companies) > 3_000  # thousands of properties
    assert sum(c["reservations"] for c in companies) > 30_000  # tens of thousands of stays


def test_data_is_deterministic_and_changes_as_the_clock_moves(sandbox):
    token = generate(sandbox).json()["access_token"]
    first = get(sandbox, "/property", token, limit=3).json()["results"]
    expected = company_data(42, 1.0, DEFAULT_CLOCK_START.date(), NASHVILLE).properties[:3]
    assert first == [p.row for p in expected]  # derived from the seed alone, in any process

    since = DEFAULT_CLOCK_START.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert get(sandbox, "/reservation", token, updated_at_ge=since).json()["total_results"] == 0
    sandbox.admin.advance(12 * 3600)
    changed = get(sandbox, "/reservation", token, updated_at_ge=since, limit=500).json()
    assert changed["total_results"] > 0
    window_end = DEFAULT_CLOCK_START + timedelta(hours=12)
    for row in changed["results"]:
        assert DEFAULT_CLOCK_START <= datetime.fromisoformat(row["updated_at"]) <= window_end

    # a scripted upstream change and a cancellation bump updated_at to the sandbox's now
    stay = changed["results"][0]
    requests.post(f"{sandbox.base_url}/_admin/breezeway/reservations/{stay['id']}",
                  json={"set": {"status": "cancelled"}}, timeout=10)
    row = requests.get(f"{sandbox.base_url}/_admin/breezeway/reservations/{stay['id']}", timeout=10).json()
    assert row["status"] == "cancelled" and datetime.fromisoformat(row["updated_at"]) == window_end.replace(tzinfo=timezone.utc)


def test_too_many_concurrent_requests_get_the_proxys_html_403(sandbox):
    requests.post(sandbox.base_url + "/_admin/breezeway/settings",
                  json={"max_concurrent_per_client": 2, "latency_ms": 300}, timeout=10)
    token = generate(sandbox).json()["access_token"]
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: get(sandbox, "/property", token, limit=1), range(6)))
    refused = [r for r in responses if r.status_code == 403]
    assert refused and all(r.headers["content-type"].startswith("text/html") for r in refused)
    assert "<title>403 Forbidden</title>" in refused[0].text
    assert sum(r.status_code == 200 for r in responses) >= 2
    assert stats(sandbox)["proxy_403"] == len(refused)
