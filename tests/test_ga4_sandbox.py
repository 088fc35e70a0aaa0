"""The GA4 emulation over real HTTP (the sandbox subprocess): shapes, aggregation, paging, (other), errors,
quota and 429s, late data that changes then freezes, and the OAuth token endpoint with google-auth."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
import requests
from google.auth import exceptions as google_errors
from google.auth.transport.requests import Request
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from adpipeline.sandbox.ga4 import demo_environment
from adpipeline.sandbox.ga4.data import Dataset, aggregate
from adpipeline.sandbox.process import SandboxProcess

SCOPES = ["https://www.googleapis.com/auth/analytics.readonly"]
RESORTS, LODGES, PARTNER = "310000001", "310000002", "310000003"
TRAFFIC = ["date", "sessionSource", "sessionMedium", "sessionCampaignName", "sessionDefaultChannelGroup"]
LANDING = ["date", "landingPagePlusQueryString", "eventName"]
DAY = "2026-11-20"  # the sandbox clock starts at 2026-11-23T12:00Z


class Ga4:
    """A raw HTTP caller of the emulation, authenticated through google-auth like the pipeline."""

    def __init__(self, sandbox: SandboxProcess) -> None:
        self.sandbox = sandbox
        env = demo_environment(sandbox.base_url)
        self.api = env["GA4_DATA_API_URL"]
        self.info = json.loads(env["GA4_CREDENTIALS"])
        self.login()

    def login(self) -> None:
        """A fresh access token (tokens expire by the sandbox clock, which tests move)."""
        creds = service_account.Credentials.from_service_account_info(self.info, scopes=SCOPES)
        creds.refresh(Request())
        self.headers = {"Authorization": f"Bearer {creds.token}"}

    def report(self, pid: str, dims: list[str], metrics: list[str], *, day: str = DAY, expect: int = 200,
               **extra) -> dict:
        body = {"dateRanges": [{"startDate": day, "endDate": day}], "dimensions": [{"name": d} for d in dims],
                "metrics": [{"name": m} for m in metrics], "returnPropertyQuota": True, **extra}
        response = requests.post(f"{self.api}/v1beta/properties/{pid}:runReport", json=body, headers=self.headers,
                                 timeout=30)
        assert response.status_code == expect, response.text
        return response.json()

    def admin(self, method: str, path: str, body=None) -> dict:
        response = requests.request(method, f"{self.sandbox.base_url}/_admin/ga4{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()


@pytest.fixture
def ga4(sandbox: SandboxProcess) -> Ga4:
    return Ga4(sandbox)


def total(report: dict, metric: int = 0) -> int:
    return sum(int(r["metricValues"][metric]["value"]) for r in report.get("rows", []))


def test_report_shape_is_ga4s_strings_typed_headers_yyyymmdd_and_property_metadata(ga4: Ga4) -> None:
    report = ga4.report(RESORTS, TRAFFIC, ["sessions", "keyEvents", "purchaseRevenue", "bounceRate",
                                           "userEngagementDuration"])
    assert report["kind"] == "analyticsData#runReport"
    assert [h["name"] for h in report["dimensionHeaders"]] == TRAFFIC
    assert [h["type"] for h in report["metricHeaders"]] == [
        "TYPE_INTEGER", "TYPE_FLOAT", "TYPE_CURRENCY", "TYPE_FLOAT", "TYPE_SECONDS"]
    assert report["metadata"] == {"currencyCode": "USD", "timeZone": "America/Jamaica"}
    assert report["rowCount"] == len(report["rows"]) > 10
    for row in report["rows"]:
        assert row["dimensionValues"][0]["value"] == "20261120"
        assert all(isinstance(v["value"], str) for v in row["metricValues"])
        float(row["metricValues"][2]["value"])  # money as a decimal string
    assert ga4.report(LODGES, ["date"], ["sessions"])["metadata"]["timeZone"] == "America/Denver"


def test_metrics_aggregate_to_whatever_dimensions_are_asked_for(ga4: Ga4) -> None:
    by_day = total(ga4.report(RESORTS, ["date"], ["sessions"]))
    assert total(ga4.report(RESORTS, TRAFFIC, ["sessions"])) == by_day
    assert total(ga4.report(RESORTS, ["date", "deviceCategory"], ["sessions"])) == by_day
    # with eventName, sessions count the sessions in which each event fired: session_start is every session
    events = ga4.report(RESORTS, LANDING, ["sessions", "eventCount"])
    starts = sum(int(r["metricValues"][0]["value"]) for r in events["rows"]
                 if r["dimensionValues"][2]["value"] == "session_start")
    assert starts == by_day
    assert total(events) > by_day  # summed over events, sessions count more than once, as in GA4


def test_the_emulation_is_determined_by_its_seed(ga4: Ga4, sandbox: SandboxProcess) -> None:
    over_http = ga4.report(RESORTS, TRAFFIC, ["sessions", "totalUsers"], limit="100000")
    truth = aggregate([(date.fromisoformat(DAY), Dataset(42, 1.0).hits(RESORTS, date.fromisoformat(DAY),
                                                                        sandbox.admin.now()))], TRAFFIC,
                      ["sessions", "totalUsers"])
    expected = {dims: (str(acc[3]), str(acc[4])) for dims, acc in truth.rows}
    got = {tuple(v["value"] for v in r["dimensionValues"]): tuple(v["value"] for v in r["metricValues"])
           for r in over_http["rows"]}
    assert got == expected


def test_limit_offset_paging_returns_every_row_once_with_the_total_in_rowcount(ga4: Ga4) -> None:
    whole = ga4.report(RESORTS, LANDING, ["sessions"], limit="100000")
    pages, offset = [], 0
    while True:
        page = ga4.report(RESORTS, LANDING, ["sessions"], limit="37", offset=str(offset))
        assert page["rowCount"] == whole["rowCount"]
        pages.extend(page.get("rows", []))
        offset += 37
        if offset >= page["rowCount"]:
            break
    assert pages == whole["rows"]
    beyond = ga4.report(RESORTS, LANDING, ["sessions"], limit="10", offset=str(whole["rowCount"] + 5))
    assert "rows" not in beyond and beyond["rowCount"] == whole["rowCount"]
    empty = ga4.report(RESORTS, LANDING, ["sessions"], day="2027-01-01")  # not happened yet
    assert "rows" not in empty and "rowCount" not in empty


def test_rows_beyond_the_cardinality_cap_fold_into_one_other_row_even_in_date(ga4: Ga4) -> None:
    report = ga4.report(LODGES, LANDING, ["sessions"], limit="100000")
    assert report["metadata"]["dataLossFromOtherRow"] is True
    other = [r for r in report["rows"] if any(v["value"] == "(other)" for v in r["dimensionValues"])]
    assert len(other) == 1
    assert [v["value"] for v in other[0]["dimensionValues"]] == ["(other)"] * 3
    starts = sum(int(r["metricValues"][0]["value"]) for r in report["rows"]
                 if r["dimensionValues"][2]["value"] == "session_start")
    assert 0 < starts < total(ga4.report(LODGES, ["date"], ["sessions"]))  # some sessions are only in (other)
    small = ga4.report(LODGES, TRAFFIC, ["sessions"])
    assert "dataLossFromOtherRow" not in small["metadata"]


def test_errors_are_shaped_like_ga4s(ga4: Ga4, sandbox: SandboxProcess) -> None:
    unknown = ga4.report(RESORTS, ["date", "sessionSorce"], ["sessions"], expect=400)["error"]
    assert unknown["status"] == "INVALID_ARGUMENT" and "sessionSorce is not a valid dimension" in unknown["message"]
    assert "Unknown name" in ga4.report(RESORTS, ["date"], ["sessions"], rowLimit=5, expect=400)["error"]["message"]
    forbidden = ga4.report(PARTNER, ["date"], ["sessions"], expect=403)["error"]
    assert forbidden["status"] == "PERMISSION_DENIED"
    assert "sufficient permissions" in forbidden["message"]
    ga4.admin("POST", f"/access/{LODGES}", {"readable": False})
    ga4.report(LODGES, ["date"], ["sessions"], expect=403)
    ga4.headers = {"Authorization": "Bearer ya29.not-a-token"}
    assert ga4.report(RESORTS, ["date"], ["sessions"], expect=401)["error"]["status"] == "UNAUTHENTICATED"


def test_recent_days_keep_changing_as_the_clock_moves_then_freeze(ga4: Ga4, sandbox: SandboxProcess) -> None:
    yesterday, old = "2026-11-22", "2026-11-15"
    before = {d: total(ga4.report(RESORTS, ["date"], ["sessions"], day=d)) for d in (yesterday, old)}
    sandbox.admin.advance(8 * 3600)
    ga4.login()
    after = {d: total(ga4.report(RESORTS, ["date"], ["sessions"], day=d)) for d in (yesterday, old)}
    assert after[yesterday] > before[yesterday]  # late hits keep arriving
    assert after[old] == before[old]  # final: more than 72 h after the day ended
    sandbox.admin.advance(4 * 24 * 3600)
    ga4.login()
    frozen = total(ga4.report(RESORTS, ["date"], ["sessions"], day=yesterday))
    sandbox.admin.advance(24 * 3600)
    ga4.login()
    assert total(ga4.report(RESORTS, ["date"], ["sessions"], day=yesterday)) == frozen


def test_property_quota_depletes_and_429s_name_their_kind(ga4: Ga4, sandbox: SandboxProcess) -> None:
    first = ga4.report(RESORTS, ["date"], ["sessions"])["propertyQuota"]
    second = ga4.report(RESORTS, ["date"], ["sessions"])["propertyQuota"]
    # as Google documents it: `consumed` is what THIS request cost, `remaining` what is left after it
    cost = second["tokensPerHour"]["consumed"]
    assert cost > 0 and first["tokensPerDay"]["remaining"] - second["tokensPerDay"]["remaining"] == cost
    used_hour = 40_000 - second["tokensPerHour"]["remaining"]
    assert used_hour == first["tokensPerHour"]["consumed"] + cost

    ga4.admin("POST", f"/quota/{RESORTS}", {"tokens_per_hour": used_hour + cost - 1})
    hourly = ga4.report(RESORTS, ["date"], ["sessions"], expect=429)["error"]
    assert hourly["status"] == "RESOURCE_EXHAUSTED" and "per hour" in hourly["message"]
    sandbox.admin.set_clock("2026-11-23T13:00:00Z")  # a new hour
    ga4.login()
    ga4.report(RESORTS, ["date"], ["sessions"])

    ga4.admin("POST", f"/quota/{RESORTS}", {"tokens_per_day": 10, "consumed_per_day": 10})
    assert "per day" in ga4.report(RESORTS, ["date"], ["sessions"], expect=429)["error"]["message"]
    sandbox.admin.set_clock("2026-11-24T08:00:01Z")  # past midnight Pacific
    ga4.login()
    ga4.report(RESORTS, ["date"], ["sessions"])

    ga4.admin("POST", f"/quota/{LODGES}", {"concurrent_requests": 0})
    assert "concurrent" in ga4.report(LODGES, ["date"], ["sessions"], expect=429)["error"]["message"]


def test_token_endpoint_serves_service_accounts_and_users_and_refuses_revoked_grants(ga4: Ga4) -> None:
    user_info = ga4.admin("GET", "/credentials?type=authorized_user")
    assert user_info["token_uri"].startswith(ga4.sandbox.base_url)
    user = user_credentials.Credentials.from_authorized_user_info(user_info, scopes=SCOPES)
    user = user.with_token_uri(user_info["token_uri"])  # google-auth would otherwise use Google's
    user.refresh(Request())
    assert user.token.startswith("ya29.") and user.expiry is not None

    ga4.admin("POST", "/revoke", {"principal": "authorized_user"})
    with pytest.raises(google_errors.RefreshError) as revoked:
        user.refresh(Request())
    assert revoked.value.args[1] == {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}

    forged = dict(ga4.info, private_key=service_account_key())
    with pytest.raises(google_errors.RefreshError, match="invalid_grant"):
        service_account.Credentials.from_service_account_info(forged, scopes=SCOPES).refresh(Request())
    assert ga4.sandbox.admin.count("POST /ga4/token") == 4


def service_account_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def test_expired_access_tokens_are_refused_by_the_sandbox_clock(ga4: Ga4, sandbox: SandboxProcess) -> None:
    ga4.report(RESORTS, ["date"], ["sessions"])
    sandbox.admin.advance(timedelta(hours=1).total_seconds())
    ga4.report(RESORTS, ["date"], ["sessions"], expect=401)
