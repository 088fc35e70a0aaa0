"""The Meta token lifecycle against the emulation and the real warehouse: inspect, refresh, degrade, fail, recover."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import requests

from adpipeline.sandbox.meta import DEMO_ACCESS_TOKEN, demo_environment
from adpipeline.sandbox.process import SandboxProcess
from adpipeline.sources.meta.assets import AD_ACCOUNTS
from adpipeline.sources.meta.auth import ACCESS_TOKEN
from adpipeline.sources.meta.definitions import build_defs
from adpipeline.sources.meta.resources import MetaResource
from adpipeline.warehouse.resource import WarehouseResource
from adpipeline.warehouse.tokens import TokenStore

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ("token_lifetime", "token_data_access", "token_refresh_attempt", "token_job_ran", "token_scopes")


class Tokens:
    def __init__(self, sandbox: SandboxProcess, warehouse_url: str) -> None:
        self.sandbox, self.url = sandbox, warehouse_url
        self.start = sandbox.admin.now()  # the demo token expires 60 days after this (its first use)
        assert requests.get(f"{sandbox.base_url}/_admin/meta/tokens", timeout=10).ok
        self.defs = build_defs()  # the pipeline's clock follows the sandbox's (ADPIPELINE_CLOCK_URL)
        self.resources = {
            "warehouse": WarehouseResource(url=warehouse_url),
            "meta": MetaResource(graph_url=f"{sandbox.base_url}/meta/v24.0", retry_base_delay=0.01),
        }

    def days_left(self, days: float) -> None:
        """Move the sandbox clock so the demo token has `days` left."""
        self.sandbox.admin.set_clock(self.start + timedelta(days=60 - days))

    def _materialize(self, selection: dg.AssetSelection) -> dg.ExecuteInProcessResult:
        return dg.materialize([*self.defs.assets, *self.defs.asset_checks], resources=self.resources,
                              selection=selection, raise_on_error=False)

    def run(self) -> tuple[dg.ExecuteInProcessResult, dict[str, str | None], dict]:
        """Materialize meta/access_token with its checks: (result, check -> None|WARN|ERROR, asset metadata)."""
        result = self._materialize(dg.AssetSelection.assets(ACCESS_TOKEN))
        assert result.success, result.all_events
        return result, severities(result), metadata(result)

    def checks_only(self) -> dict[str, str | None]:
        return severities(self._materialize(dg.AssetSelection.checks_for_assets(ACCESS_TOKEN)))

    def extract(self) -> dg.ExecuteInProcessResult:
        return self._materialize(dg.AssetSelection.assets(AD_ACCOUNTS).without_checks())

    def add_token(self, token: str, **attrs) -> None:
        response = requests.post(f"{self.sandbox.base_url}/_admin/meta/tokens", json={"access_token": token, **attrs},
                                 timeout=10)
        assert response.ok, response.text

    def stored(self):
        return TokenStore(self.url).get("meta", "default", MetaResource().api())  # the sandbox's (demo environment)


def severities(result: dg.ExecuteInProcessResult) -> dict[str, str | None]:
    return {e.check_name: None if e.passed else e.severity.value for e in result.get_asset_check_evaluations()}


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == ACCESS_TOKEN]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def check_description(result: dg.ExecuteInProcessResult, name: str) -> str:
    return next(e.description for e in result.get_asset_check_evaluations() if e.check_name == name)


@pytest.fixture
def tokens(sandbox, warehouse_url, monkeypatch) -> Iterator[Tokens]:
    for name, value in demo_environment(sandbox.base_url).items():
        monkeypatch.setenv(name, value)
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("DELETE FROM ops.platform_tokens WHERE platform = 'meta'")
    yield Tokens(sandbox, warehouse_url)


def test_sandbox_exchanges_and_inspects_tokens_on_its_clock(tokens):
    base = f"{tokens.sandbox.base_url}/meta/v24.0"
    app = {"client_id": os.environ["META_APP_ID"], "client_secret": os.environ["META_APP_SECRET"]}
    tokens.add_token("EAAShortLived01", expires_at=(tokens.start + timedelta(hours=1)).isoformat())
    answer = requests.get(f"{base}/oauth/access_token", timeout=10, params={
        **app, "grant_type": "fb_exchange_token", "fb_exchange_token": "EAAShortLived01"}).json()
    assert answer["expires_in"] == 60 * 86400 and answer["access_token"] != "EAAShortLived01"
    debug = requests.get(f"{base}/debug_token", timeout=10, params={
        "input_token": answer["access_token"], "access_token": f"{app['client_id']}|{app['client_secret']}"}).json()
    data = debug["data"]
    assert data["is_valid"] and data["expires_at"] == int((tokens.start + timedelta(days=60)).timestamp())
    assert set(data["scopes"]) >= {"ads_read", "business_management"} and data["data_access_expires_at"]

    tokens.sandbox.admin.advance(2 * 3600)  # the short-lived token is now expired: no exchange, debug says invalid
    refused = requests.get(f"{base}/oauth/access_token", timeout=10, params={
        **app, "grant_type": "fb_exchange_token", "fb_exchange_token": "EAAShortLived01"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == 190
    debug = requests.get(f"{base}/debug_token", timeout=10, params={
        "input_token": "EAAShortLived01", "access_token": f"{app['client_id']}|{app['client_secret']}"}).json()["data"]
    assert debug["is_valid"] is False and debug["error"]["subcode"] == 463


def test_checks_through_20_13_6_and_minus_1_days_left_and_expired_fails_fast(tokens, monkeypatch):
    monkeypatch.delenv("META_APP_SECRET")  # nothing can refresh: the token ages as in the incident
    seen = {}
    for days in (20, 13, 6, -1):
        tokens.days_left(days)
        _, checks, meta = tokens.run()
        seen[days] = checks["token_lifetime"]
        assert checks["token_data_access"] is None and checks["token_job_ran"] is None
        assert checks["token_refresh_attempt"] is None
        assert meta["exchanged"] is False
    assert seen == {20: None, 13: "WARN", 6: "ERROR", -1: "ERROR"}
    assert meta["status"] == "expired" and tokens.stored().status == "expired"
    assert "manual re-authentication required" in tokens.stored().last_error

    tokens.sandbox.admin.reset_requests()
    result = tokens.extract()
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message
    assert "Meta token expired: manual re-authentication required" in message
    assert "adpipeline tokens exchange meta -" in message
    assert tokens.sandbox.admin.count() == 0  # failed from the store's verdict: not one call, let alone a storm


def test_a_token_with_less_than_14_days_is_exchanged_for_a_new_60_day_token(tokens):
    tokens.days_left(13)
    result, checks, meta = tokens.run()
    assert meta["exchanged"] is True and meta["days_left"] == 60 and meta["status"] == "valid"
    assert all(checks[name] is None for name in CHECKS), checks
    stored = tokens.stored()
    assert stored.access_token != DEMO_ACCESS_TOKEN and stored.refresh_count == 1 and stored.last_refresh_succeeded
    logged = str([e.message for e in result.all_events]) + str(meta)
    assert stored.access_token not in logged and DEMO_ACCESS_TOKEN not in logged
    assert tokens.extract().success  # the data assets use the new token

    tokens.days_left(12)  # the old token's clock means nothing now; the new one has ~59 days: no second exchange
    _, _, meta = tokens.run()
    assert meta["exchanged"] is False and tokens.stored().refresh_count == 1


def test_a_failing_refresh_while_valid_warns_and_extraction_keeps_working(tokens):
    tokens.sandbox.admin.add_faults({"path": "/meta/*/oauth/access_token", "status": 503, "count": None})
    tokens.days_left(10)
    _, checks, meta = tokens.run()
    assert checks["token_refresh_attempt"] == "WARN" and checks["token_lifetime"] == "WARN"
    assert meta["status"] == "refresh_failed" and meta["refresh_error"]
    assert tokens.stored().access_token == DEMO_ACCESS_TOKEN
    assert tokens.extract().success

    tokens.sandbox.admin.clear_faults()  # the next pass refreshes and the warning clears
    _, checks, meta = tokens.run()
    assert meta["exchanged"] is True and checks["token_refresh_attempt"] is None and checks["token_lifetime"] is None


def test_a_system_user_token_that_never_expires_passes(tokens, monkeypatch):
    tokens.add_token("EAASystemUserToken0001", type="SYSTEM_USER")  # no expires_at: never
    monkeypatch.setenv("META_ACCESS_TOKEN", "EAASystemUserToken0001")
    tokens.days_left(-300)
    _, checks, meta = tokens.run()
    assert all(checks[name] is None for name in CHECKS), checks
    assert meta["expires_at"] == "never" and meta["never_expires"] is True and meta["exchanged"] is False


def test_missing_scopes_are_reported_by_name(tokens, monkeypatch):
    tokens.add_token("EAANoBusinessScope0001", expires_at=(tokens.start + timedelta(days=50)).isoformat(),
                     scopes=["ads_read"])
    monkeypatch.setenv("META_ACCESS_TOKEN", "EAANoBusinessScope0001")
    result, checks, meta = tokens.run()
    assert checks["token_scopes"] == "WARN" and meta["missing_scopes"] == ["business_management"]
    assert "business_management" in check_description(result, "token_scopes")

    tokens.add_token("EAANoAdsScope0001", expires_at=(tokens.start + timedelta(days=50)).isoformat(),
                     scopes=["pages_show_list"])
    monkeypatch.setenv("META_ACCESS_TOKEN", "EAANoAdsScope0001")
    result, checks, meta = tokens.run()
    assert checks["token_scopes"] == "ERROR"
    assert meta["missing_scopes"] == ["ads_read or ads_management", "business_management"]
    assert "ads_read or ads_management" in tokens.stored().last_error


def test_a_token_job_gap_over_2_hours_is_an_error(tokens, warehouse_url):
    tokens.run()
    assert tokens.checks_only()["token_job_ran"] is None
    tokens.sandbox.admin.advance(90 * 60)
    assert tokens.checks_only()["token_job_ran"] is None
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("UPDATE ops.platform_tokens SET last_checked_at = last_checked_at - interval '1 hour'"
                     " WHERE platform = 'meta'")
    assert tokens.checks_only()["token_job_ran"] == "ERROR"


def _cli(tokens: Tokens, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **demo_environment(tokens.sandbox.base_url)}
    return subprocess.run([sys.executable, "-m", "adpipeline.cli", "tokens", *args], input=stdin, env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_cli_exchange_restores_extraction_and_never_shows_the_token(tokens):
    tokens.days_left(-1)
    _, checks, _ = tokens.run()
    assert checks["token_lifetime"] == "ERROR" and not tokens.extract().success

    canary = "EAACanaryShortLivedToken0000000000000001"
    tokens.add_token(canary, expires_at=(tokens.sandbox.admin.now() + timedelta(hours=1)).isoformat())
    done = _cli(tokens, "exchange", "meta", "-", stdin=canary + "\n")
    assert done.returncode == 0, done.stderr
    assert "verified with debug_token" in done.stdout and "expires" in done.stdout
    stored = tokens.stored()
    assert stored.status == "valid" and stored.expires_at == tokens.sandbox.admin.now() + timedelta(days=60)
    for secret in (canary, stored.access_token, os.environ["META_APP_SECRET"]):
        assert secret not in done.stdout + done.stderr

    assert tokens.extract().success  # extraction restored; the environment's old token does not win back
    _, checks, _ = tokens.run()
    assert checks["token_lifetime"] is None

    status = _cli(tokens, "status")
    assert "meta" in status.stdout and canary not in status.stdout and stored.access_token not in status.stdout

    tokens.sandbox.admin.advance(2 * 3600)  # an expired short-lived token cannot be exchanged: a clear refusal
    refused = _cli(tokens, "exchange", "meta", canary)
    assert refused.returncode == 2 and "manual re-authentication required" in refused.stderr
    assert canary not in refused.stdout + refused.stderr


def test_the_token_asset_is_standalone_and_scheduled_every_30_minutes():
    from adpipeline.definitions import defs  # the whole project: nothing anywhere depends on the token asset
    graph = defs.resolve_asset_graph()
    assert not graph.get(ACCESS_TOKEN).child_keys and not graph.get(ACCESS_TOKEN).parent_keys
    schedule = defs.resolve_schedule_def("meta_token")
    assert schedule.cron_schedule == "*/30 * * * *" and schedule.execution_timezone == "America/Jamaica"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING and schedule.job_name == "meta_token_job"
    spec = next(s for a in defs.assets for s in a.specs if s.key == ACCESS_TOKEN)
    assert spec.group_name == "meta" and spec.owners and spec.code_version and spec.description and spec.kinds
    assert not any(c.blocking for a in defs.asset_checks for c in a.check_specs if c.asset_key == ACCESS_TOKEN)
