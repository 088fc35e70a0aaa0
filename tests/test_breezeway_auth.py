"""Breezeway auth and client on the sandbox + the real token store: reuse, refresh, rotation, regenerate,
the 1/min auth limit under concurrent runs, 401 -> refresh and retry once, HTML 403, secrets kept out."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import psycopg
import pytest
import requests

from adpipeline.http import ApiError, ErrorKind, RetryPolicy
from adpipeline.sandbox.breezeway.data import client_id, client_secret
from adpipeline.sandbox.process import SandboxProcess
from adpipeline.sources.breezeway.auth import PLATFORM, BreezewayAuth, Credentials, jwt_expiry
from adpipeline.sources.breezeway.client import BreezewayClient
from adpipeline.warehouse.tokens import TokenStore, api_origin

REGION, COMPANY = "nashville", 8558
GENERATE = "POST /breezeway/public/auth/v1/"
REFRESH = "POST /breezeway/public/auth/v1/refresh"


@pytest.fixture
def store(warehouse_url: str, sandbox: SandboxProcess) -> Iterator[TokenStore]:
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("DELETE FROM ops.platform_tokens WHERE platform = %s", (PLATFORM,))
    store = TokenStore(warehouse_url)
    read = store.get
    store.get = lambda platform, scope, api=api_origin(sandbox.base_url): read(platform, scope, api)  # the sandbox's
    yield store


def make_client(sandbox: SandboxProcess, warehouse_url: str, *, secret: str | None = None,
                clock: Callable[[], datetime] | None = None, max_concurrency: int = 1) -> BreezewayClient:
    """One "run": its own token store connection and HTTP session, judging time by the sandbox clock;
    any wait (pacing, Retry-After, backoff) moves the sandbox clock instead of sleeping."""
    client = BreezewayClient(sandbox.base_url + "/breezeway", REGION, max_concurrency=max_concurrency,
                             sleep=sandbox.admin.advance, retry=RetryPolicy(max_attempts=4, base_delay=0.01))
    credentials = Credentials(client_id(COMPANY), secret or client_secret(COMPANY))
    client.auth = BreezewayAuth(REGION, credentials, TokenStore(warehouse_url), client,
                                clock=clock or sandbox.admin.now, sleep=sandbox.admin.advance)
    return client


def first_page(client: BreezewayClient) -> list[dict]:
    return client.get("/public/inventory/v1/property", {"limit": 5}, entity="properties")["results"]


def concurrently(*runs: Callable[[], object]) -> list[object]:
    results: list[object] = [None] * len(runs)

    def run(i: int) -> None:
        try:
            results[i] = runs[i]()
        except Exception as exc:  # noqa: BLE001 - surfaced by the caller's asserts
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(runs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def auth_stats(sandbox: SandboxProcess) -> dict:
    counters = sandbox.admin.requests()["by_route"]
    limited = requests.get(sandbox.base_url + "/_admin/breezeway/stats", timeout=10).json()["auth_rate_limited"]
    return {"generate": counters.get(GENERATE, 0), "refresh": counters.get(REFRESH, 0), "rate_limited": limited}


def test_two_concurrent_runs_generate_one_token_then_reuse_it(sandbox, store, warehouse_url):
    a, b = make_client(sandbox, warehouse_url), make_client(sandbox, warehouse_url)
    pages = concurrently(lambda: first_page(a), lambda: first_page(b))
    assert all(isinstance(p, list) and len(p) == 5 for p in pages), pages
    assert auth_stats(sandbox) == {"generate": 1, "refresh": 0, "rate_limited": 0}

    token = store.get(PLATFORM, REGION)
    assert token.generation_count == 1 and token.refresh_count == 0 and token.status == "valid"
    assert token.expires_at == sandbox.admin.now() + timedelta(hours=24) == jwt_expiry(token.access_token)
    with psycopg.connect(warehouse_url) as conn:  # encrypted at rest
        raw = conn.execute("SELECT t::text FROM ops.platform_tokens t WHERE platform = %s", (PLATFORM,)).fetchone()[0]
    assert token.access_token not in raw and token.refresh_token not in raw

    sandbox.admin.advance(23 * 3600)  # a later run, well before the 5-minute margin: reuse, no auth call
    assert first_page(make_client(sandbox, warehouse_url))
    assert auth_stats(sandbox)["generate"] + auth_stats(sandbox)["refresh"] == 1


def test_near_expiry_two_concurrent_runs_refresh_once_and_rotation_is_safe(sandbox, store, warehouse_url):
    first_page(make_client(sandbox, warehouse_url))
    spent = store.get(PLATFORM, REGION).refresh_token
    sandbox.admin.advance(24 * 3600 - 4 * 60)  # inside the 5-minute margin before exp

    a, b = make_client(sandbox, warehouse_url), make_client(sandbox, warehouse_url)
    pages = concurrently(lambda: first_page(a), lambda: first_page(b))
    assert all(isinstance(p, list) for p in pages), pages
    assert auth_stats(sandbox) == {"generate": 1, "refresh": 1, "rate_limited": 0}
    token = store.get(PLATFORM, REGION)
    assert (token.refresh_count, token.generation_count, token.status) == (1, 1, "valid")
    assert token.refresh_token != spent
    assert token.expires_at == sandbox.admin.now() + timedelta(hours=24)
    sandbox.admin.advance(61)
    reuse = requests.post(sandbox.base_url + "/breezeway/public/auth/v1/refresh",
                          headers={"Authorization": f"JWT {spent}"}, timeout=10)
    assert reuse.status_code == 401  # the old refresh token is spent; only the stored one works


def test_refused_refresh_regenerates_once_under_two_concurrent_runs(sandbox, store, warehouse_url):
    first_page(make_client(sandbox, warehouse_url))
    sandbox.admin.advance(24 * 3600 - 60)
    sandbox.admin.add_faults({"path": "/breezeway/public/auth/v1/refresh", "status": 401,
                              "body": {"message": "Refresh token is no longer valid"}, "count": None})
    a, b = make_client(sandbox, warehouse_url), make_client(sandbox, warehouse_url)
    pages = concurrently(lambda: first_page(a), lambda: first_page(b))
    assert all(isinstance(p, list) for p in pages), pages
    assert auth_stats(sandbox) == {"generate": 2, "refresh": 1, "rate_limited": 0}
    token = store.get(PLATFORM, REGION)
    assert (token.generation_count, token.refresh_count, token.status) == (2, 0, "valid")
    assert "refresh failed" in token.last_error and "HTTP 401" in token.last_error


def test_auth_calls_wait_a_minute_after_the_last_one(sandbox, store, warehouse_url):
    first_page(make_client(sandbox, warehouse_url))
    generated_at = sandbox.admin.now()
    with store.locked(PLATFORM, REGION, api_origin(sandbox.base_url)) as (token, save):  # e.g. revoked upstream
        save(token.__class__(**{**token.__dict__, "access_token": None, "refresh_token": None}))
    sandbox.admin.advance(10)
    assert first_page(make_client(sandbox, warehouse_url))
    assert sandbox.admin.now() >= generated_at + timedelta(seconds=60)  # it waited out the minute...
    assert auth_stats(sandbox) == {"generate": 2, "refresh": 0, "rate_limited": 0}  # ...so never a 429


def test_expired_token_401_refreshes_and_retries_once(sandbox, store, warehouse_url):
    started = sandbox.admin.now()
    client = make_client(sandbox, warehouse_url, clock=lambda: started)  # a run whose clock lags the API's
    assert first_page(client)
    sandbox.admin.advance(25 * 3600)  # the API now says the access token has expired
    assert first_page(client)
    assert client.reauthentications == 1
    assert auth_stats(sandbox) == {"generate": 1, "refresh": 1, "rate_limited": 0}
    counts = sandbox.admin.requests()["recent"]
    assert [e["status"] for e in counts if "inventory" in e["path"]] == [200, 401, 200]


def test_bad_credentials_fail_clearly_without_leaking_and_mark_the_token_invalid(sandbox, store, warehouse_url,
                                                                                  caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-secret-6f1c2b9e"
    client = make_client(sandbox, warehouse_url, secret=wrong)
    with pytest.raises(ApiError) as failure:
        first_page(client)
    assert failure.value.kind is ErrorKind.AUTH
    message = str(failure.value)
    assert message.startswith("breezeway nashville") and "re-authenticate" in message and "HTTP 401" in message
    assert wrong not in message and wrong not in caplog.text
    token = store.get(PLATFORM, REGION)
    assert token.status == "invalid" and "Invalid client credentials" in token.last_error
    assert auth_stats(sandbox)["generate"] == 1  # not retried


def test_proxy_html_403_is_backed_off_and_concurrency_stays_bounded(sandbox, store, warehouse_url):
    requests.post(sandbox.base_url + "/_admin/breezeway/settings",
                  json={"max_concurrent_per_client": 3, "latency_ms": 30}, timeout=10)
    sandbox.admin.add_faults({"path": "/breezeway/public/inventory/v1/property", "status": 403,
                              "content_type": "text/html", "body": "<html><title>403 Forbidden</title></html>"})
    client = make_client(sandbox, warehouse_url, max_concurrency=3)
    client.page_size = 20
    rows = list(client.properties())
    assert len(rows) == len({r["id"] for r in rows}) > 500  # every page, once
    assert client.retries == 1  # the HTML 403 was retried like a transient error
    stats = requests.get(sandbox.base_url + "/_admin/breezeway/stats", timeout=10).json()
    assert stats["max_in_flight"][client_id(COMPANY)] <= 3 and stats["proxy_403"] == 0


def test_a_401_no_new_token_fixes_marks_the_stored_token_invalid_at_once(sandbox, store, warehouse_url):
    client = make_client(sandbox, warehouse_url)
    assert first_page(client)
    assert store.get(PLATFORM, REGION).status == "valid"
    # the company's API access is revoked: tokens are still issued, every data call answers 401
    assert requests.post(sandbox.base_url + "/_admin/breezeway/settings",
                         json={"revoked_companies": [COMPANY]}, timeout=10).ok
    with pytest.raises(ApiError) as failure:
        first_page(client)
    assert failure.value.kind is ErrorKind.AUTH and "revoked" in str(failure.value)
    token = store.get(PLATFORM, REGION)
    assert token.status == "invalid" and "refused a freshly issued token" in token.last_error
    assert client.reauthentications == 1  # one refresh was tried, then the verdict
    # the store is bound to the API it was issued by
    assert token.api == sandbox.base_url.split("/breezeway")[0].lower()
    assert store.get(PLATFORM, REGION, "https://api.breezeway.io") is None


def _settings(sandbox: SandboxProcess, **changes) -> None:
    assert requests.post(sandbox.base_url + "/_admin/breezeway/settings", json=changes, timeout=10).ok


@pytest.mark.parametrize("api_clock", ["no exp claim", "API clock 23h57m behind"])
def test_an_untrustworthy_exp_is_reused_for_the_documented_lifetime_not_renewed_per_request(
        sandbox, store, warehouse_url, api_clock):
    if api_clock == "no exp claim":
        _settings(sandbox, access_token_exp=False)
    else:  # every token the API issues looks to us as if it expired in 3 minutes
        _settings(sandbox, api_clock_skew_seconds=-(23 * 3600 + 57 * 60))
    client = make_client(sandbox, warehouse_url)
    for page in range(1, 6):
        assert client.get("/public/inventory/v1/property", {"limit": 5, "page": page}, entity="properties")
    assert auth_stats(sandbox) == {"generate": 1, "refresh": 0, "rate_limited": 0}  # not 5 paced re-auths
    token = store.get(PLATFORM, REGION)
    assert token.status == "valid" and token.last_error.startswith("expiry assumed")
    assert token.expires_at == sandbox.admin.now() + timedelta(hours=24)
    # a second run reuses it too; when the API finally answers 401, one refresh and on
    again = make_client(sandbox, warehouse_url)
    assert first_page(again) and auth_stats(sandbox)["generate"] == 1
    sandbox.admin.advance(25 * 3600)
    later = make_client(sandbox, warehouse_url)
    assert first_page(later) and auth_stats(sandbox)["refresh"] + auth_stats(sandbox)["generate"] == 2


def test_refused_credentials_are_not_retried_until_they_change(sandbox, store, warehouse_url):
    wrong = "wrong-secret-0a9b8c7d"
    with pytest.raises(ApiError):
        first_page(make_client(sandbox, warehouse_url, secret=wrong))
    assert auth_stats(sandbox)["generate"] == 1
    sandbox.admin.advance(3600)
    waited = []
    second = make_client(sandbox, warehouse_url, secret=wrong)
    second.auth.sleep = waited.append
    with pytest.raises(ApiError) as failure:  # the next run (or step): no auth call, no minute's wait
        first_page(second)
    assert failure.value.kind is ErrorKind.AUTH and "not retried until the client credentials change" in str(failure.value)
    assert auth_stats(sandbox)["generate"] == 1 and waited == [] and wrong not in str(failure.value)
    assert store.get(PLATFORM, REGION).status == "invalid"
    # fixed credentials are tried at once and work
    assert first_page(make_client(sandbox, warehouse_url))
    assert auth_stats(sandbox)["generate"] == 2 and store.get(PLATFORM, REGION).status == "valid"


def test_a_runs_requests_read_the_clock_once_a_second_not_once_each(sandbox, store, warehouse_url):
    """Following the sandbox's clock, a clock read is an HTTP call: read for every request's token check, it
    doubled a run's calls to the sandbox (and the request threads queued on the token lock behind each other's)."""
    from adpipeline.sources.breezeway.auth import CLOCK_REUSE

    reads, steady = [], [0.0]

    def clock() -> datetime:
        reads.append(1)
        return sandbox.admin.now()

    auth = make_client(sandbox, warehouse_url, clock=clock).auth
    auth.monotonic = lambda: steady[0]  # the steady clock, standing still
    token = auth.access_token()
    reads.clear()
    assert all(auth.access_token() == token for _ in range(20))
    assert len(reads) == 0
    steady[0] += CLOCK_REUSE  # a second later the clock is read again, and the token judged by it
    sandbox.admin.advance(24 * 3600)
    assert auth.access_token() != token
    assert len(reads) >= 1
