"""The Meta client against the Meta emulation (real HTTP, its own process). Time is fake: the client's clock
and sleep are injected, and where it matters sleeping also moves the sandbox's clock."""

from __future__ import annotations

import json
import logging
import random
import threading
import time as real_time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from adpipeline.http import (
    ApiPermissionError,
    AuthError,
    BadRequestError,
    RetryPolicy,
    ThrottledError,
    TransientError,
    clear_registered_secrets,
)
from adpipeline.sandbox.meta import DEMO_ACCESS_TOKEN
from adpipeline.sandbox.process import SandboxProcess
from adpipeline.sources.meta.client import (
    ALL_STATUSES,
    ENTITY_FIELDS,
    INSIGHTS_FIELDS,
    MetaClient,
    entity_record,
    insights_record,
    parse_time,
)

JAMAICA, DENVER, LONDON = "act_100000000000001", "act_100000000000002", "act_100000000000003"
INSIGHTS_PATH = "/meta/v24.0/act_*/insights"
CANARY = "EAACanaryToken7f3e9d2c1b0a99887766"


class FakeTime:
    """Injectable clock/sleep; with `sandbox`, sleeping also advances the sandbox clock (rate-limit blocks end)."""

    def __init__(self, sandbox: SandboxProcess | None = None) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []
        self.sandbox = sandbox

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.sandbox is not None and seconds > 0:
            self.sandbox.admin.advance(seconds)


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    clear_registered_secrets()


def make_client(sandbox: SandboxProcess, time: FakeTime, token: str = DEMO_ACCESS_TOKEN, **options: Any) -> MetaClient:
    retry = options.pop("retry", RetryPolicy(max_attempts=5, base_delay=1.0, max_total_seconds=900))
    return MetaClient(f"{sandbox.base_url}/meta/v24.0", token, clock=time.clock, sleep=time.sleep,
                      rng=random.Random(3), retry=retry, **options)


def truth(sandbox: SandboxProcess, account: str, since: str, until: str, **extra: str) -> list[dict]:
    answer = requests.get(f"{sandbox.base_url}/_admin/meta/insights", timeout=30, params={
        "account_id": account, "since": since, "until": until, "fields": ",".join(INSIGHTS_FIELDS), **extra})
    assert answer.ok, answer.text
    return answer.json()["data"]


def script(sandbox: SandboxProcess, **changes: Any) -> None:
    assert requests.post(f"{sandbox.base_url}/_admin/meta/script", json=changes, timeout=10).ok


def usage(sandbox: SandboxProcess) -> dict:
    return requests.get(f"{sandbox.base_url}/_admin/meta/usage", timeout=10).json()


def graph_error(code: int, message: str = "error", subcode: int | None = None, **extra: Any) -> dict:
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbC123", **extra}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


def d(text: str) -> date:
    return date.fromisoformat(text)


# ---- paging -------------------------------------------------------------------------------------------


def test_every_paging_quirk_yields_exactly_the_emulations_rows(sandbox):
    client = make_client(sandbox, FakeTime(), page_limit=7)
    for account in (JAMAICA, DENVER, LONDON):
        assert list(client.insights(account, d("2026-11-03"), d("2026-11-05"))) == truth(
            sandbox, account, "2026-11-03", "2026-11-05")
    pages = client.calls
    assert pages > 30  # small pages: many short and empty ones among them
    entities = requests.get(f"{sandbox.base_url}/_admin/meta/entities", params={"account_id": JAMAICA, "kind": "ad"}).json()
    listed = list(client.entities(JAMAICA, "ads"))
    assert listed == entities["data"]  # any status, deleted and archived included
    assert {r["effective_status"] for r in listed} >= {"ACTIVE", "DELETED"}


# ---- error classes ------------------------------------------------------------------------------------

BUC_BLOCKED = json.dumps({"100000000000002": [{"type": "ads_insights", "call_count": 100, "total_cputime": 40,
                                               "total_time": 60, "estimated_time_to_regain_access": 2,
                                               "ads_api_access_tier": "standard_access"}]})


@pytest.mark.parametrize(
    "fault, error_class, requests_made, min_wait",
    [
        ({"status": 400, "body": graph_error(190, "Error validating access token: Session has expired on Sunday, "
                                             "22-Nov-26 16:00:00 PST.", 463)}, AuthError, 1, 0),
        ({"status": 400, "body": graph_error(190, "Error validating access token: The user has not authorized "
                                             "application", 458)}, AuthError, 1, 0),
        ({"status": 400, "body": graph_error(102, "Session key invalid")}, AuthError, 1, 0),
        ({"status": 403, "body": graph_error(200, "(#200) Requires business_management permission")},
         ApiPermissionError, 1, 0),
        ({"status": 400, "body": graph_error(10, "(#10) Application does not have permission for this action")},
         ApiPermissionError, 1, 0),
        ({"status": 400, "body": graph_error(100, "(#100) Param level must be one of {ad, adset}")},
         BadRequestError, 1, 0),
        ({"status": 500, "body": graph_error(1, "An unknown error occurred"), "count": 2}, None, 3, 0),
        ({"status": 503, "body": graph_error(2, "Service temporarily unavailable", is_transient=True)}, None, 2, 0),
        ({"status": 502, "body": "<html><title>502 Bad Gateway</title></html>", "content_type": "text/html"},
         None, 2, 0),
        ({"status": 400, "body": graph_error(17, "(#17) User request limit reached", 2446079),
          "headers": {"X-Business-Use-Case-Usage": BUC_BLOCKED}}, None, 2, 120),
        ({"status": 400, "body": graph_error(80004, "(#80004) There have been too many calls to this ad-account.",
                                             2446079), "headers": {"X-Business-Use-Case-Usage": BUC_BLOCKED}},
         None, 2, 120),
        ({"status": 400, "body": graph_error(613, "(#613) Calls to this api have exceeded the rate limit.",
                                             1487742)}, None, 2, 60),
        ({"status": 400, "body": graph_error(4, "(#4) Application request limit reached")}, None, 2, 60),
    ],
    ids=["190-463-expired", "190-458", "102", "200", "10", "100", "1-transient", "2-transient", "html-502",
         "17-throttled", "80004-throttled", "613-throttled", "4-throttled"],
)
def test_each_error_code_behaves_as_classified(sandbox, fault, error_class, requests_made, min_wait):
    sandbox.admin.add_faults([{"path": INSIGHTS_PATH, "method": "GET", **fault}])
    time = FakeTime()
    client = make_client(sandbox, time)
    if error_class is None:
        rows = list(client.insights(DENVER, d("2026-11-05"), d("2026-11-05")))
        assert rows == truth(sandbox, DENVER, "2026-11-05", "2026-11-05")
    else:
        with pytest.raises(error_class) as raised:
            list(client.insights(DENVER, d("2026-11-05"), d("2026-11-05")))
        assert raised.value.code == fault["body"]["error"]["code"]
        if error_class is AuthError:
            assert "manual re-authentication required" in str(raised.value)
    assert sandbox.admin.count("GET /meta/{version}/act_{account_id}/{edge:str}") == requests_made
    assert sum(time.sleeps) >= min_wait


@pytest.mark.parametrize("refusals, seconds", [(2, 2), (8, 1)], ids=["waits-as-told", "more-than-max-attempts"])
def test_throttles_are_waited_out_as_retry_after_says_however_many_within_the_time_budget(sandbox, refusals, seconds):
    """Each wait is the advertised one (before: a 60 s guess each), and 8 refusals, more than max_attempts (5),
    still end in the rows (before: the account was skipped after 5)."""
    sandbox.admin.add_faults([{"path": INSIGHTS_PATH, "method": "GET", "status": 400, "count": refusals,
                               "headers": {"Retry-After": str(seconds)},
                               "body": graph_error(613, "(#613) Calls to this api have exceeded the rate limit.")}])
    time = FakeTime()
    client = make_client(sandbox, time, retry=RetryPolicy(max_attempts=5, base_delay=0.5, max_total_seconds=900))
    assert list(client.insights(DENVER, d("2026-11-05"), d("2026-11-05"))) == truth(
        sandbox, DENVER, "2026-11-05", "2026-11-05")
    assert time.sleeps == [float(seconds)] * refusals


def test_an_account_throttled_past_the_budget_fails_without_waiting(sandbox):
    blocked = BUC_BLOCKED.replace('"estimated_time_to_regain_access": 2', '"estimated_time_to_regain_access": 60')
    sandbox.admin.add_faults([{"path": INSIGHTS_PATH, "status": 400, "count": None, "headers": {
        "X-Business-Use-Case-Usage": blocked}, "body": graph_error(80000, "(#80000) There have been too many calls "
                                                                          "from this ad-account.", 2446079)}])
    time = FakeTime()
    client = make_client(sandbox, time, retry=RetryPolicy(max_total_seconds=600))
    with pytest.raises(ThrottledError) as raised:
        list(client.insights(DENVER, d("2026-11-05"), d("2026-11-05")))
    assert raised.value.exhausted and raised.value.retry_after == 3600
    assert time.sleeps == [] and client.calls == 1


# ---- rate limits --------------------------------------------------------------------------------------


def test_a_throttled_client_waits_out_each_block_once(sandbox):
    """Under a tight budget the emulation refuses, the client waits what it advertises, and never gets a
    second refusal in the same block."""
    script(sandbox, limits={"ads_insights_calls": 6, "window_seconds": 3600, "block_seconds": 150})
    time = FakeTime(sandbox)
    client = make_client(sandbox, time, slow_down_at=101.0, page_limit=500)  # no proactive slow-down here
    for day in range(1, 16):
        assert list(client.insights(LONDON, date(2026, 11, day), date(2026, 11, day)))
    seen = usage(sandbox)
    blocks = seen["throttled_per_block"]
    assert len(blocks) >= 2 and set(blocks.values()) == {1}, blocks
    # each refusal advertised 3 minutes (150 s rounded up): the waits cover every block
    assert sum(time.sleeps) >= 180 * len(blocks)
    assert all(entry["first"] for entry in seen["log"])


def test_the_client_slows_down_before_the_limit(sandbox):
    script(sandbox, limits={"account_calls": 20, "window_seconds": 60, "block_seconds": 300})
    time = FakeTime(sandbox)
    client = make_client(sandbox, time, page_limit=10, max_in_flight=4)
    day = 1
    while client.calls < 60:
        list(client.entities(JAMAICA, "campaigns"))
        list(client.insights(JAMAICA, date(2026, 11, day), date(2026, 11, day)))
        day += 1
    # three times the budget of 20 calls a minute...
    assert usage(sandbox)["throttled_responses"] == 0  # ...and not one refused
    assert client.throttle_pauses > 0 and sum(time.sleeps) == pytest.approx(client.throttle_seconds)


class SharedTime(FakeTime):
    """FakeTime for several threads: a pause takes a little real time too, so the other threads run during it."""

    def __init__(self, sandbox: SandboxProcess) -> None:
        super().__init__(sandbox)
        self.lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self.lock:
            super().sleep(seconds)
        real_time.sleep(0.05)


def test_parallel_calls_share_the_slow_down_and_none_is_refused(sandbox):
    script(sandbox, limits={"account_calls": 40, "window_seconds": 60, "block_seconds": 300})
    time = SharedTime(sandbox)
    client = make_client(sandbox, time, page_limit=10, max_in_flight=8)

    def pull(day: int) -> int:
        return len(list(client.insights(JAMAICA, date(2026, 10, day), date(2026, 10, day))))

    with ThreadPoolExecutor(max_workers=8) as pool:  # eight windows of one account at once
        assert all(list(pool.map(pull, range(1, 31))))
    assert client.calls > 120  # three times the budget of 40 calls a minute...
    assert usage(sandbox)["throttled_responses"] == 0  # ...and not one refused
    assert client.throttle_pauses > 0


# ---- oversized requests and async reports -------------------------------------------------------------


def test_too_much_data_shrinks_the_page_and_resumes_at_the_same_cursor(sandbox):
    script(sandbox, max_page_rows=60)
    client = make_client(sandbox, FakeTime(), page_limit=500)
    assert list(client.insights(JAMAICA, d("2026-11-01"), d("2026-11-06"))) == truth(
        sandbox, JAMAICA, "2026-11-01", "2026-11-06")
    assert client.page_shrinks == 4  # 500 -> 250 -> 125 -> 62 -> 31
    # the same error in the middle of a listing: the page is asked again, smaller, at the same cursor
    script(sandbox, max_page_rows=5000)
    too_much = graph_error(1, "Please reduce the amount of data you're asking for, then retry your request")
    sandbox.admin.add_faults([
        {"path": INSIGHTS_PATH, "query": {"limit": "60"}},  # the first page goes through...
        {"path": INSIGHTS_PATH, "query": {"limit": "60"}, "status": 500, "body": too_much},  # ...the second fails
    ])
    client = make_client(sandbox, FakeTime(), page_limit=60)
    assert list(client.insights(DENVER, d("2026-11-01"), d("2026-11-04"))) == truth(
        sandbox, DENVER, "2026-11-01", "2026-11-04")
    assert client.page_shrinks == 1
    assert any("limit=30" in e["query"] and "after=" in e["query"] for e in sandbox.admin.requests()["recent"])


def test_timeouts_go_async_and_too_much_data_per_call_splits_the_window(sandbox):
    script(sandbox, sync_max_cells=40)  # any sync call of more than one day times out (100/1504018)
    time = FakeTime()
    client = make_client(sandbox, time)
    assert list(client.insights(LONDON, d("2026-11-01"), d("2026-11-04"))) == truth(
        sandbox, LONDON, "2026-11-01", "2026-11-04")
    assert client.async_jobs == 1

    script(sandbox, sync_max_cells=2_000_000)
    sandbox.admin.add_faults([{"path": INSIGHTS_PATH, "method": "GET", "status": 400, "count": 1,
                               "body": graph_error(100, "(#100) Too much data per call", 1487534)}])
    client = make_client(sandbox, time)
    assert list(client.insights(LONDON, d("2026-11-01"), d("2026-11-04"))) == truth(
        sandbox, LONDON, "2026-11-01", "2026-11-04")
    asked = [json.loads(parse_qs(e["query"])["time_range"][0]) for e in sandbox.admin.requests()["recent"]
             if "time_range" in e["query"]][-client.calls:]
    windows = list(dict.fromkeys((r["since"], r["until"]) for r in asked))
    assert windows == [("2026-11-01", "2026-11-04"), ("2026-11-01", "2026-11-02"), ("2026-11-03", "2026-11-04")]
    assert client.async_jobs == 0  # refused, then the two halves


def test_async_reports_wait_for_completed_despite_100_percent(sandbox):
    time = FakeTime()
    client = make_client(sandbox, time, async_poll_seconds=5)
    rows = list(client.insights(JAMAICA, d("2026-11-01"), d("2026-11-20")))  # > 7 days: async
    assert rows == truth(sandbox, JAMAICA, "2026-11-01", "2026-11-20")
    counts = sandbox.admin.requests()["by_route"]
    polls = counts["GET /meta/{version}/{report_run_id:int}"]
    assert polls >= 5 and time.sleeps == [5] * (polls - 1)
    statuses = [e["status"] for e in sandbox.admin.requests()["recent"] if "insights" in e["path"] and
                e["path"].count("/") == 4 and e["method"] == "GET"]
    assert statuses and set(statuses) == {200}  # results were never fetched early (no 2601)


def test_async_job_failure_and_timeout(sandbox):
    poll = r"/meta/v24\.0/\d+"
    sandbox.admin.add_faults([{"path_regex": poll, "status": 200, "count": 1, "body": {
        "id": "1", "async_status": "Job Failed", "async_percent_completion": 40}}])
    client = make_client(sandbox, FakeTime())
    with pytest.raises(TransientError, match="Job Failed"):
        list(client.insights(JAMAICA, d("2026-11-01"), d("2026-11-02"), mode="async"))
    sandbox.admin.add_faults([{"path_regex": poll, "status": 200, "count": None, "body": {
        "id": "1", "async_status": "Job Running", "async_percent_completion": 100}}])
    time = FakeTime()
    client = make_client(sandbox, time, async_timeout_seconds=60, async_poll_seconds=10)
    with pytest.raises(TransientError, match="not completed after 60s"):
        list(client.insights(JAMAICA, d("2026-11-01"), d("2026-11-02"), mode="async"))
    assert sum(time.sleeps) == 60


# ---- secrets and parsing ------------------------------------------------------------------------------


def test_the_token_never_reaches_a_log_line_or_an_exception(sandbox, caplog):
    assert requests.post(f"{sandbox.base_url}/_admin/meta/tokens", json={"access_token": CANARY}, timeout=10).ok
    caplog.set_level(logging.DEBUG)
    client = make_client(sandbox, FakeTime(), token=CANARY, page_limit=5)
    assert list(client.insights(JAMAICA, d("2026-11-02"), d("2026-11-02")))  # next URLs carry the token
    sandbox.admin.add_faults([
        {"path": INSIGHTS_PATH, "status": 500, "body": graph_error(1, f"unknown error for {CANARY}")},
        {"path": INSIGHTS_PATH, "status": 400, "body": graph_error(190, f"Invalid OAuth access token {CANARY}", 467)},
    ])
    with pytest.raises(AuthError) as raised:
        list(client.insights(JAMAICA, d("2026-11-03"), d("2026-11-03")))
    for text in (caplog.text, str(raised.value), repr(raised.value), raised.value.url or "",
                 json.dumps(sandbox.admin.requests()["recent"])):
        assert CANARY not in text
    assert "access_token=***" in caplog.text


def test_parsing_types_and_attribution_windows():
    assert parse_time("2024-03-12T15:02:47-0700") == datetime(2024, 3, 12, 22, 2, 47, tzinfo=timezone.utc)
    row = {
        "account_id": "1", "account_currency": "GBP", "ad_id": "9", "adset_id": "8", "campaign_id": "7",
        "date_start": "2026-11-02", "date_stop": "2026-11-02", "spend": "14.35", "impressions": "185",
        "clicks": "9", "reach": "150",
        "actions": [{"action_type": "link_click", "value": "9"},
                    {"action_type": "omni_purchase", "value": "3", "7d_click": "2", "1d_view": "1"},
                    {"action_type": "purchase", "value": "3", "1d_click": "1", "7d_click": "2", "28d_click": "4",
                     "1d_view": "1"}],
        "action_values": [{"action_type": "purchase", "value": "150.50", "7d_click": "100.25", "1d_view": "50.25",
                           "28d_click": "180.00"}],
    }
    record = insights_record(row, "act_1", ("purchase", "omni_purchase"))  # purchase preferred here
    assert record["date"] == date(2026, 11, 2) and record["currency"] == "GBP"
    assert (record["spend"], record["impressions"], record["clicks"], record["reach"]) == (Decimal("14.35"), 185, 9, 150)
    assert [record[f"conversions_{w}"] for w in ("1d_click", "7d_click", "28d_click", "1d_view")] == [1, 2, 4, 1]
    assert record["conversions"] == 3  # the first preferred type only: omni_purchase counts the same purchases again
    assert record["purchase_value_1d_click"] == 0  # a window Meta left out is zero
    assert record["purchase_value"] == Decimal("150.50") and record["purchase_value_28d_click"] == Decimal("180.00")
    ad = entity_record("ads", {"id": "9", "account_id": "1", "adset_id": "8", "campaign_id": "7", "name": "Ad",
                               "status": "DELETED", "effective_status": "DELETED", "creative": {"id": "5"},
                               "created_time": "2026-01-01T10:00:00+0000", "updated_time": "2026-02-01T00:00:00-0500"})
    assert ad["account_id"] == "act_1" and ad["creative_id"] == "5" and ad["status"] == "DELETED"
    assert ad["updated_time"] == datetime(2026, 2, 1, 5, tzinfo=timezone.utc)
    assert set(ENTITY_FIELDS["ads"]) <= set(ad) | {"creative"} and "DELETED" in ALL_STATUSES
