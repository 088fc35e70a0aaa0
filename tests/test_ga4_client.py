"""The GA4 client against the sandbox subprocess: exact paging, quota slow-down, per-kind 429 waits,
bounded 5xx retries, google-auth credentials through the token store, invalid_grant never retried.

Time is the sandbox's: the client's `now` reads the sandbox clock and its `sleep` moves it, so a wait for
the next hour really refills the hour's quota, without anybody waiting."""

from __future__ import annotations

import json
import math
import random
import uuid
from datetime import date
from typing import Any

import pytest
import requests

from adpipeline.http import ApiError, AuthError, ErrorKind, RetryPolicy, ThrottledError, TransientError
from adpipeline.sandbox.ga4 import demo_environment
from adpipeline.sandbox.process import SandboxProcess
from adpipeline.sources.ga4.auth import CredentialsError, Ga4Auth, load_credentials_info
from adpipeline.sources.ga4.client import Ga4Client, QuotaPolicy, seconds_to_pacific_midnight
from adpipeline.sources.ga4.reports import LANDING_PAGE_EVENTS, TRAFFIC_ACQUISITION
from adpipeline.warehouse.tokens import TokenStore, token_states

RESORTS, LODGES = "310000001", "310000002"
DAY = date(2026, 11, 20)
RUN_REPORT = "POST /ga4/v1beta/properties/{property_id}:runReport"
TOKEN = "POST /ga4/token"


class SandboxTime:
    """`now` is the sandbox clock; `sleep` advances it (and a monotonic counter for the retry budget)."""

    def __init__(self, sandbox: SandboxProcess) -> None:
        self.sandbox = sandbox
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def now(self):
        return self.sandbox.admin.now()

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += seconds
        self.sandbox.admin.advance(seconds)

    def clock(self) -> float:
        return self.elapsed


@pytest.fixture
def time_(sandbox: SandboxProcess) -> SandboxTime:
    return SandboxTime(sandbox)


@pytest.fixture
def env(sandbox: SandboxProcess) -> dict[str, str]:
    return demo_environment(sandbox.base_url)


def make_client(env: dict[str, str], time_: SandboxTime, *, info: dict | None = None, store: TokenStore | None = None,
                name: str = "GA4_CREDENTIALS", **kwargs: Any) -> Ga4Client:
    info = info or load_credentials_info(env["GA4_CREDENTIALS"])
    auth = Ga4Auth(info, name=name, store=store, now=time_.now)
    return Ga4Client(env["GA4_DATA_API_URL"], auth=auth, now=time_.now, sleep=time_.sleep, clock=time_.clock,
                     **kwargs)


def truth(sandbox: SandboxProcess, pid: str, body: dict) -> list[dict]:
    response = requests.post(f"{sandbox.base_url}/_admin/ga4/properties/{pid}:runReport", json=body, timeout=30)
    response.raise_for_status()
    return response.json().get("rows", [])


def ga4_429(message: str, count: int = 1) -> dict:
    return {"path": "/ga4/v1beta/properties/*", "status": 429, "count": count,
            "body": {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED"}}}


def test_many_pages_equal_the_emulations_truth(sandbox: SandboxProcess, env, time_) -> None:
    client = make_client(env, time_)
    body = LANDING_PAGE_EVENTS.request(DAY, page_size=50)
    pages = list(client.run_report(RESORTS, body))
    rows = [row for page in pages for row in page["rows"]]
    expected = truth(sandbox, RESORTS, body)
    assert rows == expected and len(expected) > 300
    assert len(pages) == math.ceil(len(expected) / 50)
    assert sandbox.admin.count(RUN_REPORT) == len(pages) == client.calls  # no extra request after the last page
    # per request, as Google documents it: each page's `consumed` is its own cost, `remaining` drops by it
    quotas = [p["propertyQuota"]["tokensPerDay"] for p in pages]
    assert all(q["consumed"] > 0 for q in quotas)
    assert all(b["remaining"] == a["remaining"] - b["consumed"] for a, b in zip(quotas, quotas[1:]))


@pytest.mark.parametrize("slow_below", [0.25, 0.0])
def test_the_client_slows_down_before_the_hourly_quota_runs_out(sandbox: SandboxProcess, env, time_,
                                                                slow_below) -> None:
    requests.post(f"{sandbox.base_url}/_admin/ga4/quota/{RESORTS}", json={"tokens_per_hour": 60}, timeout=10)
    client = make_client(env, time_, quota=QuotaPolicy(slow_below=slow_below, tokens_per_hour=60))
    body = TRAFFIC_ACQUISITION.request(DAY, page_size=1)  # one request per row: ~19 requests of 4 tokens
    rows = [row for page in client.run_report(RESORTS, body) for row in page["rows"]]

    assert rows == truth(sandbox, RESORTS, body)
    statuses = [r["status"] for r in sandbox.admin.requests()["recent"] if "runReport" in r["path"]]
    assert statuses == [200] * len(rows)  # slowed down in time: not a single 429
    waits = client.governor.waits
    if slow_below:  # the hour's last tokens are spread over the rest of the hour
        assert [kind for kind, _ in waits] == ["pace"] * 3 and [s for _, s in waits] == [1200.0] * 3
    else:  # no pacing: used up, then one wait for the top of the hour
        assert waits == [("hourly", 3601.0)]
    assert 3600 <= sum(time_.sleeps) <= 3601  # into the next hour, and no further


@pytest.mark.parametrize(
    ("message", "faults", "expected_sleeps", "requests_made"),
    [
        ("Exhausted concurrent requests quota.", 2, "short", 3),
        ("Exhausted property tokens for a project per hour.", 1, "hour", 2),
        ("Exhausted potentially thresholded requests quota.", 1, "hour", 2),
    ],
)
def test_429s_wait_as_long_as_their_kind_needs(sandbox: SandboxProcess, env, time_, message, faults,
                                               expected_sleeps, requests_made) -> None:
    sandbox.admin.add_faults(ga4_429(message, count=faults))
    client = make_client(env, time_, rng=random.Random(7))
    pages = list(client.run_report(RESORTS, TRAFFIC_ACQUISITION.request(DAY, page_size=1000)))
    assert len(pages) == 1 and sandbox.admin.count(RUN_REPORT) == requests_made
    if expected_sleeps == "short":
        assert len(time_.sleeps) == faults and all(2.0 <= s <= 4.0 for s in time_.sleeps)
    else:  # the sandbox clock starts at 12:00:00: the next hour is 3600 s away
        assert time_.sleeps == [3601.0]


def test_an_exhausted_daily_quota_fails_at_once_naming_the_reset(sandbox: SandboxProcess, env, time_) -> None:
    sandbox.admin.add_faults(ga4_429("Exhausted property tokens per day.", count=None))
    client = make_client(env, time_)
    with pytest.raises(ThrottledError) as raised:
        list(client.run_report(RESORTS, TRAFFIC_ACQUISITION.request(DAY, page_size=1000)))
    assert sandbox.admin.count(RUN_REPORT) == 1 and time_.sleeps == []  # no storm, no hour-long wait
    assert "midnight Pacific" in str(raised.value) and raised.value.retry_after == pytest.approx(72001)


def test_the_client_stops_before_the_daily_quota_runs_out(sandbox: SandboxProcess, env, time_) -> None:
    quota = requests.post(f"{sandbox.base_url}/_admin/ga4/quota/{RESORTS}", json={"tokens_per_day": 14}, timeout=10)
    assert quota.ok
    client = make_client(env, time_, quota=QuotaPolicy(tokens_per_day=14))
    with pytest.raises(ThrottledError, match="daily property tokens nearly exhausted"):
        list(client.run_report(RESORTS, TRAFFIC_ACQUISITION.request(DAY, page_size=1)))
    statuses = [r["status"] for r in sandbox.admin.requests()["recent"] if "runReport" in r["path"]]
    assert statuses and set(statuses) == {200}  # stopped itself before GA4 had to say 429


def test_below_20_percent_of_the_days_tokens_the_client_spreads_requests_over_the_day(
        sandbox: SandboxProcess, env, time_) -> None:
    """The issue-16 scenario: 16.7% of the day's tokens left. `consumed` is per request, so the share left is
    remaining / the daily limit, and the client slows down (it used to read consumed as a running total)."""
    assert requests.post(f"{sandbox.base_url}/_admin/ga4/quota/{RESORTS}", json={"consumed_per_day": 166_600},
                         timeout=10).ok
    client = make_client(env, time_)  # the standard property's limits
    body = TRAFFIC_ACQUISITION.request(DAY, page_size=5)
    rows = [row for page in client.run_report(RESORTS, body) for row in page["rows"]]
    assert rows == truth(sandbox, RESORTS, body)
    reading = client.governor.readings[RESORTS]
    assert reading.day_share_left() < 0.20 < (reading.day_remaining / (reading.day_remaining + reading.day_consumed))
    kinds = [kind for kind, _ in client.governor.waits]
    assert kinds and set(kinds) == {"pace_daily"} and len(kinds) == client.calls - 1  # every request after the first
    cost = client.governor.costs[RESORTS]
    expected = seconds_to_pacific_midnight(time_.now()) * cost / reading.day_remaining  # what is left of the day
    assert client.governor.waits[-1][1] == pytest.approx(expected, rel=0.05)


def test_server_errors_are_retried_with_bounded_backoff(sandbox: SandboxProcess, env, time_) -> None:
    sandbox.admin.add_faults({"path": "/ga4/v1beta/properties/*", "status": 503, "count": 2,
                              "body": {"error": {"code": 503, "message": "The service is currently unavailable.",
                                                 "status": "UNAVAILABLE"}}})
    client = make_client(env, time_)
    assert len(list(client.run_report(RESORTS, TRAFFIC_ACQUISITION.request(DAY, page_size=1000)))) == 1
    assert sandbox.admin.count(RUN_REPORT) == 3 and len(time_.sleeps) == 2

    sandbox.admin.reset()
    time_.sleeps.clear()
    sandbox.admin.add_faults({"path": "/ga4/v1beta/properties/*", "status": 500, "count": None})
    client = make_client(env, time_, retry=RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=60.0))
    with pytest.raises(TransientError) as raised:
        list(client.run_report(RESORTS, TRAFFIC_ACQUISITION.request(DAY, page_size=1000)))
    assert raised.value.attempts == 4 and sandbox.admin.count(RUN_REPORT) == 4
    assert len(time_.sleeps) == 3 and all(0 <= s <= 4 for s in time_.sleeps)


def test_bad_request_and_forbidden_property_are_not_retried(sandbox: SandboxProcess, env, time_) -> None:
    client = make_client(env, time_)
    body = TRAFFIC_ACQUISITION.request(DAY, page_size=1000)
    with pytest.raises(ApiError) as forbidden:
        list(client.run_report("310000003", body))
    assert forbidden.value.kind is ErrorKind.PERMISSION and "properties/310000003" in str(forbidden.value)
    body["dimensions"].append({"name": "sessionSorce"})
    with pytest.raises(ApiError) as bad:
        list(client.run_report(RESORTS, body))
    assert bad.value.kind is ErrorKind.BAD_REQUEST and "sessionSorce is not a valid dimension" in str(bad.value)
    assert sandbox.admin.count(RUN_REPORT) == 2 and time_.sleeps == []


def test_credentials_come_inline_or_from_a_file_and_errors_never_echo_them(env, tmp_path) -> None:
    inline = load_credentials_info(env["GA4_CREDENTIALS"])
    path = tmp_path / "service-account.json"
    path.write_text(env["GA4_CREDENTIALS"])
    assert load_credentials_info(str(path)) == inline and inline["type"] == "service_account"
    unusable = ['{"private_key": "hunter2-secret"', str(tmp_path / "missing.json"),
                json.dumps({"type": "external_account", "private_key": "hunter2-secret"})]
    for raw in unusable:
        with pytest.raises(CredentialsError) as raised:
            load_credentials_info(raw, "GA4_CREDENTIALS")
        assert "GA4_CREDENTIALS" in str(raised.value) and "hunter2" not in str(raised.value)


@pytest.fixture
def store(warehouse_url: str) -> TokenStore:
    return TokenStore(warehouse_url)


def test_tokens_are_minted_once_and_shared_through_the_store(sandbox: SandboxProcess, env, time_, store) -> None:
    name = f"GA4_TEST_{uuid.uuid4().hex[:8].upper()}"
    body = TRAFFIC_ACQUISITION.request(DAY, page_size=1000)
    for _ in range(2):  # two runs, one token
        list(make_client(env, time_, store=store, name=name).run_report(RESORTS, body))
    assert sandbox.admin.count(TOKEN) == 1
    stored = store.get("ga4", name)
    assert stored.status == "valid" and stored.refresh_count == 1 and stored.access_token.startswith("ya29.")

    sandbox.admin.reset()  # the sandbox forgets the tokens it issued; the stored one still looks valid
    list(make_client(env, time_, store=store, name=name).run_report(RESORTS, body))
    assert sandbox.admin.count(TOKEN) == 1 and sandbox.admin.count(RUN_REPORT) == 2  # one 401, one new token
    assert store.get("ga4", name).refresh_count == 2


def test_authorized_user_credentials_use_their_own_token_uri(sandbox: SandboxProcess, env, time_) -> None:
    info = requests.get(f"{sandbox.base_url}/_admin/ga4/credentials", params={"type": "authorized_user"},
                        timeout=10).json()
    client = make_client(env, time_, info=load_credentials_info(json.dumps(info)))
    assert list(client.run_report(RESORTS, TRAFFIC_ACQUISITION.request(DAY, page_size=1000)))
    assert sandbox.admin.count(TOKEN) == 1


@pytest.mark.parametrize("principal", ["service_account", "authorized_user"])
def test_invalid_grant_says_reauthorize_and_is_never_retried(sandbox: SandboxProcess, env, time_, store,
                                                              principal, warehouse_url) -> None:
    info = requests.get(f"{sandbox.base_url}/_admin/ga4/credentials", params={"type": principal}, timeout=10).json()
    requests.post(f"{sandbox.base_url}/_admin/ga4/revoke", json={"principal": principal}, timeout=10)
    name = f"GA4_TEST_{uuid.uuid4().hex[:8].upper()}"
    client = make_client(env, time_, info=load_credentials_info(json.dumps(info)), store=store, name=name)
    body = TRAFFIC_ACQUISITION.request(DAY, page_size=1000)
    for pid in (RESORTS, LODGES):  # the second property does not try again
        with pytest.raises(AuthError) as raised:
            list(client.run_report(pid, body))
        text = str(raised.value)
        assert "invalid_grant" in text and "Re-authorize" in text and name in text and "not retried" in text
        for secret in ("private_key", "refresh_token", "client_secret"):
            if secret in info:
                assert info[secret] not in text and info[secret] not in repr(raised.value)
    assert sandbox.admin.count(TOKEN) == 1 and sandbox.admin.count(RUN_REPORT) == 0 and time_.sleeps == []

    import psycopg

    with psycopg.connect(warehouse_url) as conn:
        state = next(t for t in token_states(conn, "ga4") if t.scope == name)
    assert state.status == "invalid" and state.last_refresh_succeeded is False
    assert "Re-authorize" in state.last_error

    from adpipeline.cli import token_rows

    row = next(r for r in token_rows() if r["platform"] == "ga4" and r["scope"] == name)
    assert row["health"] == "EXPIRED" and "re-authentication" in row["detail"]

    # the grant works again (re-consented, key re-enabled): not asked again within the hour, then recovered
    requests.post(f"{sandbox.base_url}/_admin/ga4/revoke", json={"principal": principal, "revoked": False}, timeout=10)
    again = make_client(env, time_, info=load_credentials_info(json.dumps(info)), store=store, name=name)
    with pytest.raises(AuthError, match="Re-authorize"):
        list(again.run_report(RESORTS, body))
    assert sandbox.admin.count(TOKEN) == 1
    time_.sleep(3700)
    later = make_client(env, time_, info=load_credentials_info(json.dumps(info)), store=store, name=name)
    assert list(later.run_report(RESORTS, body))
    assert sandbox.admin.count(TOKEN) == 2 and store.get("ga4", name).status == "valid"
