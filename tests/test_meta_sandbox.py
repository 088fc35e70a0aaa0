"""The Meta emulation over real HTTP: the facts of ../shared/api-notes/meta-marketing-api.md it must honour."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any

import requests

from adpipeline.sandbox.meta import DEMO_ACCESS_TOKEN
from adpipeline.sandbox.process import SandboxProcess

JAMAICA, DENVER, LONDON = "act_100000000000001", "act_100000000000002", "act_100000000000003"
WINDOWS = ["1d_click", "7d_click", "28d_click", "1d_view"]
FIELDS = "account_id,account_currency,campaign_id,adset_id,ad_id,spend,impressions,clicks,reach,actions,action_values"


def graph(sandbox: SandboxProcess, path: str, token: str | None = DEMO_ACCESS_TOKEN, method: str = "GET",
          **params: Any) -> requests.Response:
    if token is not None:
        params["access_token"] = token
    params = {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in params.items()}
    return requests.request(method, f"{sandbox.base_url}/meta/v24.0/{path}", params=params, timeout=30)


def insights_params(since: str, until: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"level": "ad", "time_increment": 1, "time_range": {"since": since, "until": until or since},
            "fields": FIELDS, "action_attribution_windows": WINDOWS, **extra}


def follow(sandbox: SandboxProcess, path: str, **params: Any) -> tuple[list[dict], list[dict]]:
    """(rows, pages) of a listing, following `paging.next` until it is absent."""
    first = graph(sandbox, path, **params)
    assert first.status_code == 200, first.text
    pages, rows, payload = [], [], first.json()
    while True:
        pages.append(payload)
        rows += payload["data"]
        following = payload["paging"].get("next")
        if not following:
            return rows, pages
        payload = requests.get(following, timeout=30).json()


def truth(sandbox: SandboxProcess, account: str, since: str, until: str | None = None, **extra: str) -> list[dict]:
    answer = requests.get(f"{sandbox.base_url}/_admin/meta/insights", timeout=30, params={
        "account_id": account, "since": since, "until": until or since, "fields": FIELDS, **extra})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def script(sandbox: SandboxProcess, **changes: Any) -> dict:
    answer = requests.post(f"{sandbox.base_url}/_admin/meta/script", json=changes, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def error_of(response: requests.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"message", "type", "code", "fbtrace_id"} <= set(body["error"])
    return body["error"]


def test_accounts_and_hierarchy_look_like_the_graph_api(sandbox):
    accounts, _ = follow(sandbox, "me/adaccounts", fields="id,account_id,name,currency,timezone_name,account_status")
    assert [(a["id"], a["timezone_name"], a["currency"]) for a in accounts][:3] == [
        (JAMAICA, "America/Jamaica", "USD"), (DENVER, "America/Denver", "USD"), (LONDON, "Europe/London", "GBP")]
    assert all(a["account_id"] == a["id"].removeprefix("act_") for a in accounts)

    fields = "id,name,status,effective_status,daily_budget,created_time,updated_time"
    campaigns, _ = follow(sandbox, f"{DENVER}/campaigns", fields=fields)
    assert campaigns and all(isinstance(c["daily_budget"], str) for c in campaigns)
    # Denver in November: -0700, without a colon
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d-0700", c["updated_time"]) for c in campaigns)
    london, _ = follow(sandbox, f"{LONDON}/ads", fields="id,created_time")
    assert all(a["created_time"].endswith(("+0000", "+0100")) for a in london)

    # deleted / archived ads appear only when asked for by status
    every = requests.get(f"{sandbox.base_url}/_admin/meta/entities", params={"account_id": JAMAICA, "kind": "ad"}).json()["data"]
    gone = {a["id"] for a in every if a["effective_status"] in ("DELETED", "ARCHIVED")}
    assert gone
    default, _ = follow(sandbox, f"{JAMAICA}/ads", fields="id,effective_status", limit=50)
    assert gone.isdisjoint(a["id"] for a in default)
    asked, _ = follow(sandbox, f"{JAMAICA}/ads", fields="id,effective_status", limit=50,
                      filtering=[{"field": "ad.effective_status", "operator": "IN", "value": ["DELETED", "ARCHIVED"]}])
    assert {a["id"] for a in asked} == gone

    # incremental: only what was updated after the given unix time
    cutoff = datetime(2026, 11, 20, tzinfo=timezone.utc)
    expected = {a["id"] for a in every if datetime.strptime(a["updated_time"], "%Y-%m-%dT%H:%M:%S%z") > cutoff}
    recent, _ = follow(sandbox, f"{JAMAICA}/ads", fields="id,updated_time", effective_status=list(_all_statuses()),
                       filtering=[{"field": "ad.updated_time", "operator": "GREATER_THAN", "value": int(cutoff.timestamp())}])
    assert {a["id"] for a in recent} == expected and 0 < len(expected) < len(every)


def _all_statuses() -> tuple[str, ...]:
    from adpipeline.sources.meta.client import ALL_STATUSES

    return ALL_STATUSES


def test_insights_rows_are_strings_with_windows_per_action(sandbox):
    rows, _ = follow(sandbox, f"{JAMAICA}/insights", **insights_params("2026-11-10", action_attribution_windows=[
        *WINDOWS, "7d_view", "28d_view"]))
    assert rows
    for row in rows:
        assert row["date_start"] == row["date_stop"] == "2026-11-10"
        assert row["account_currency"] == "USD" and row["account_id"] == "100000000000001"
        assert all(isinstance(row[k], str) for k in ("spend", "impressions", "clicks", "reach"))
        assert re.fullmatch(r"\d+\.\d\d", row["spend"])
        for action in row.get("actions", []) + row.get("action_values", []):
            assert isinstance(action["value"], str)
            assert set(action) - {"action_type", "value"} <= set(WINDOWS)  # retired view windows never returned
    purchases = [a for r in rows for a in r.get("actions", []) if a["action_type"] == "purchase"]
    assert purchases and any("28d_click" in p for p in purchases)
    # narrower windows never hold more than wider ones
    assert all(int(p.get("1d_click", 0)) <= int(p.get("7d_click", 0)) <= int(p.get("28d_click", 0)) for p in purchases)


def test_paging_has_short_and_empty_pages_and_next_carries_the_token(sandbox):
    rows, pages = follow(sandbox, f"{JAMAICA}/insights", **insights_params("2026-11-01", "2026-11-08", limit=10))
    assert rows == truth(sandbox, JAMAICA, "2026-11-01", "2026-11-08")  # every row once, in order
    sizes = [len(p["data"]) for p in pages]
    assert 0 in sizes[:-1], sizes  # an EMPTY page that still has `next`
    assert any(0 < s < 10 for s in sizes[:-1]), sizes  # a short one
    assert all(f"access_token={DEMO_ACCESS_TOKEN}" in p["paging"]["next"] for p in pages[:-1])
    assert "next" not in pages[-1]["paging"]


def test_a_time_range_in_the_accounts_future_is_rejected(sandbox):
    # 05:30 UTC on the 24th: already the 24th in Jamaica (00:30) and London, still the 23rd in Denver (22:30)
    sandbox.admin.set_clock("2026-11-24T05:30:00Z")
    assert graph(sandbox, f"{JAMAICA}/insights", **insights_params("2026-11-24")).status_code == 200
    assert graph(sandbox, f"{LONDON}/insights", **insights_params("2026-11-24")).status_code == 200
    refused = graph(sandbox, f"{DENVER}/insights", **insights_params("2026-11-23", "2026-11-24"))
    assert refused.status_code == 400
    error = error_of(refused)
    assert error["code"] == 100 and "future" in error["message"] and "America/Denver" in error["message"]
    assert graph(sandbox, f"{DENVER}/insights", **insights_params("2026-11-23")).status_code == 200


def test_error_envelope_codes(sandbox):
    requests.post(f"{sandbox.base_url}/_admin/meta/tokens", timeout=10, json={
        "access_token": "EAAExpiredSandboxToken0000000000001", "expires_at": "2026-11-01T00:00:00Z"})
    missing = error_of(graph(sandbox, "me/adaccounts", token=None))
    assert missing["code"] == 104
    unknown = error_of(graph(sandbox, "me/adaccounts", token="EAAUnknownToken000000000000000000"))
    assert (unknown["code"], unknown.get("error_subcode")) == (190, None)
    expired = error_of(graph(sandbox, "me/adaccounts", token="EAAExpiredSandboxToken0000000000001"))
    assert (expired["code"], expired["error_subcode"], expired["type"]) == (190, 463, "OAuthException")
    assert expired["message"].startswith("Error validating access token: Session has expired on")

    script(sandbox, forbidden_accounts=[DENVER], max_page_rows=100, sync_max_cells=36 * 5)
    forbidden = graph(sandbox, f"{DENVER}/campaigns")
    assert error_of(forbidden)["code"] == 200
    too_big = graph(sandbox, f"{JAMAICA}/insights", **insights_params("2026-11-01", limit=500))
    assert too_big.status_code == 500
    assert error_of(too_big)["code"] == 1 and "reduce the amount of data" in error_of(too_big)["message"]
    timeout = error_of(graph(sandbox, f"{LONDON}/insights", **insights_params("2026-11-01", "2026-11-10")))
    assert (timeout["code"], timeout["error_subcode"]) == (100, 1504018)
    assert graph(sandbox, f"{LONDON}/insights", method="POST", **insights_params("2026-11-01", "2026-11-10")).ok
    bad_field = error_of(graph(sandbox, f"{JAMAICA}/ads", fields="id,relevance_score"))
    assert bad_field["code"] == 100 and "relevance_score" in bad_field["message"]


def test_usage_headers_follow_real_request_counts_and_blocks_end_on_the_clock(sandbox):
    script(sandbox, limits={"account_calls": 10, "ads_insights_calls": 1000, "window_seconds": 600,
                            "block_seconds": 150})
    for n in range(1, 6):
        answer = graph(sandbox, f"{JAMAICA}/insights", **insights_params("2026-11-01", limit=1))
        assert answer.ok
    usage = json.loads(answer.headers["X-Ad-Account-Usage"])
    assert usage["acc_id_util_pct"] == 50.0 and usage["reset_time_duration"] > 0
    buc = json.loads(answer.headers["X-Business-Use-Case-Usage"])["100000000000001"]
    assert buc[0]["type"] == "ads_insights" and buc[0]["call_count"] == 0  # 5 of 1000
    assert json.loads(answer.headers["X-App-Usage"]).keys() == {"call_count", "total_cputime", "total_time"}
    for _ in range(5):
        assert graph(sandbox, f"{JAMAICA}/campaigns").ok  # the account meter counts every edge
    refused = graph(sandbox, f"{JAMAICA}/insights", **insights_params("2026-11-01", limit=1))
    error = error_of(refused)
    assert (error["code"], error["error_subcode"]) == (17, 2446079)
    assert json.loads(refused.headers["X-Ad-Account-Usage"])["reset_time_duration"] == 150
    assert not graph(sandbox, f"{JAMAICA}/campaigns").ok  # still blocked
    assert graph(sandbox, f"{DENVER}/campaigns").ok  # other accounts are not
    sandbox.admin.advance(151)
    again = graph(sandbox, f"{JAMAICA}/campaigns")
    assert again.ok and json.loads(again.headers["X-Ad-Account-Usage"])["acc_id_util_pct"] == 10.0


def test_async_report_reaches_100_percent_before_it_completes(sandbox):
    params = insights_params("2026-11-01", "2026-11-09")
    run_id = graph(sandbox, f"{DENVER}/insights", method="POST", **params).json()["report_run_id"]
    seen = []
    while True:
        status = graph(sandbox, run_id).json()
        seen.append((status["async_status"], status["async_percent_completion"]))
        if status["async_status"] == "Job Completed":
            break
        early = graph(sandbox, f"{run_id}/insights")
        error = error_of(early)
        assert (error["code"], error["error_subcode"], error["is_transient"]) == (2601, 1815107, True)
    assert ("Job Running", 100) in seen and seen[0] == ("Job Not Started", 0)
    rows, _ = follow(sandbox, f"{run_id}/insights", limit=50)
    assert rows == truth(sandbox, DENVER, "2026-11-01", "2026-11-09")


def _by_ad(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["ad_id"], r["date_start"]): r for r in rows}


def _purchases(row: dict, window: str) -> int:
    return sum(int(a.get(window, 0)) for a in row.get("actions", []) if a["action_type"] == "purchase")


def test_restatement_conversions_grow_for_28_days_and_some_rows_vanish(sandbox):
    days = ("2026-11-01", "2026-11-10")
    sandbox.admin.set_clock("2026-11-11T18:00:00Z")
    early = {a: _by_ad(truth(sandbox, a, *days)) for a in (JAMAICA, DENVER, LONDON)}
    sandbox.admin.set_clock("2026-12-20T18:00:00Z")  # every day of the range is now older than 28 days
    late = {a: _by_ad(truth(sandbox, a, *days)) for a in (JAMAICA, DENVER, LONDON)}
    vanished = [k for a in early for k in early[a] if k not in late[a]]
    assert vanished  # Meta dropped rows after the fact
    assert all(k in early[a] for a in late for k in late[a])  # and never adds ad-days to complete days
    kept = [(early[a][k], late[a][k]) for a in late for k in late[a]]
    assert all(e["spend"] == l["spend"] for e, l in kept)  # spend of complete days is settled
    assert sum(_purchases(l, "28d_click") for _, l in kept) > sum(_purchases(e, "28d_click") for e, _ in kept)
    # the 1-day window of days at least two days old had matured before the first pull already
    settled = [(e, l) for e, l in kept if e["date_start"] <= "2026-11-09"]
    assert [_purchases(e, "1d_click") for e, _ in settled] == [_purchases(l, "1d_click") for _, l in settled]


def test_the_running_day_accumulates(sandbox):
    sandbox.admin.set_clock("2026-11-23T08:00:00Z")  # 03:00 in Jamaica
    morning = sum(float(r["spend"]) for r in truth(sandbox, JAMAICA, "2026-11-23"))
    sandbox.admin.set_clock("2026-11-23T20:00:00Z")  # 15:00
    afternoon = sum(float(r["spend"]) for r in truth(sandbox, JAMAICA, "2026-11-23"))
    assert 0 < morning < afternoon


def test_data_is_determined_by_the_seed_and_generated_lazily_at_scale(sandbox):
    first = truth(sandbox, LONDON, "2026-11-05")
    sandbox.admin.reset()
    assert truth(sandbox, LONDON, "2026-11-05") == first
    with SandboxProcess(seed=42, scale=2000) as big:  # 96,000 ads in one account: only one page is built
        started = time.monotonic()
        answer = graph(big, f"{JAMAICA}/insights", **insights_params("2026-11-05", limit=500))
        assert answer.ok and len(answer.json()["data"]) > 0 and answer.json()["paging"].get("next")
        assert time.monotonic() - started < 10
    with SandboxProcess(seed=7) as other:
        assert truth(other, LONDON, "2026-11-05") != first


def test_scripted_extra_accounts_are_listed_and_serve_insights(sandbox: SandboxProcess) -> None:
    listed, _ = follow(sandbox, "me/adaccounts", fields="id,timezone_name")
    assert len(listed) == 4
    script(sandbox, extra_accounts=10)
    listed, _ = follow(sandbox, "me/adaccounts", fields="id,timezone_name")
    extra = [row["id"] for row in listed[4:]]
    assert extra == [f"act_1000000000000{n}" for n in range(11, 21)]
    rows, _ = follow(sandbox, "act_100000000000020/insights", **insights_params("2026-11-20", "2026-11-22"),
                     limit=500)
    assert rows and rows == truth(sandbox, "act_100000000000020", "2026-11-20", "2026-11-22")
    assert {row["date_start"] for row in rows} == {"2026-11-20", "2026-11-21", "2026-11-22"}
    requests.delete(f"{sandbox.base_url}/_admin/meta/script", timeout=10)
    assert graph(sandbox, "act_100000000000020/insights", **insights_params("2026-11-22")).status_code == 400


def test_scripted_account_ads_make_one_account_large_and_its_insights_follow(sandbox: SandboxProcess) -> None:
    params = insights_params("2026-11-20")
    small, jamaica = truth(sandbox, DENVER, "2026-11-20"), truth(sandbox, JAMAICA, "2026-11-20")
    script(sandbox, account_ads={DENVER: 400})
    ads, _ = follow(sandbox, f"{DENVER}/ads", fields="id", effective_status=list(_all_statuses()), limit=500)
    assert len(ads) == 400
    large, _ = follow(sandbox, f"{DENVER}/insights", **params, limit=500)
    assert len(large) > 5 * len(small) and large == truth(sandbox, DENVER, "2026-11-20")
    assert small == [row for row in large if row in small]  # the account's first ads are the ones it had
    assert truth(sandbox, JAMAICA, "2026-11-20") == jamaica  # the other accounts are as they were
    requests.delete(f"{sandbox.base_url}/_admin/meta/script", timeout=10)
    assert truth(sandbox, DENVER, "2026-11-20") == small
