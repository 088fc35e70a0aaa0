"""Tokens against the real APIs' behaviour (issue 16): a token the API refuses is marked in the store at once
(status, checks and `adpipeline tokens status` agree), and a token is only ever sent to the API host that
issued it (a second loopback server stands in for graph.facebook.com)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import psycopg
import pytest
import requests

from adpipeline.cli import token_rows
from adpipeline.sandbox.meta import DEMO_ACCESS_TOKEN
from adpipeline.sources.meta.auth import ACCESS_TOKEN
from adpipeline.sources.meta.assets import ADS_INSIGHTS
from adpipeline.sources.meta.resources import MetaResource
from adpipeline.warehouse.tokens import TokenStore, api_origin, token_states
from test_meta_assets import meta  # noqa: F401  (the fixture)

DAYS = ("2026-11-20", "2026-11-20")


class Recorder(BaseHTTPRequestHandler):
    """A Graph-shaped stand-in on another port: records the token of every request, answers empty lists
    (or, when `next_url` is set, one page whose `paging.next` names yet another host)."""

    seen: list[str]
    next_url: str | None = None

    def do_GET(self) -> None:  # noqa: N802
        query = parse_qs(urlsplit(self.path).query)
        self.seen.append(query.get("access_token", [""])[0] or self.headers.get("Authorization", ""))
        body = {"data": [], "paging": {"next": self.next_url}} if self.next_url else {"data": []}
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def other_host() -> Iterator:
    servers = []

    def start(next_url: str | None = None) -> tuple[str, list[str]]:
        seen: list[str] = []
        handler = type("Handler", (Recorder,), {"seen": seen, "next_url": next_url})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _use(meta, graph_url: str, monkeypatch) -> None:
    """Point the pipeline at another Graph host, as a user would (the token checks read META_GRAPH_URL)."""
    monkeypatch.setenv("META_GRAPH_URL", f"{graph_url}/v24.0")
    meta.resources = {**meta.resources, "meta": MetaResource(retry_base_delay=0.01)}


def _failure(result: dg.ExecuteInProcessResult) -> str:
    return next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").step_failure_data.error.message


def test_a_sandbox_token_never_reaches_another_host(meta, other_host, monkeypatch):
    sandbox_api = api_origin(meta.sandbox.base_url)
    assert meta.run(ADS_INSIGHTS, days=DAYS, checks=False).success  # the demo: the sandbox's token is stored
    assert meta.run(ACCESS_TOKEN, checks=False).success  # the token job inspects it (its scopes)
    assert "has the required permissions" in meta.check("token_scopes", key=ACCESS_TOKEN)["token_scopes"].description
    [stored] = [t for t in token_states(psycopg.connect(meta.url), "meta")]
    assert stored.api == sandbox_api and stored.status == "valid"

    # a run aimed at "graph.facebook.com" with no token configured: nothing is sent, the message says why
    graph, seen = other_host()
    monkeypatch.delenv("META_ACCESS_TOKEN")
    _use(meta, graph, monkeypatch)
    refused = meta.run(ADS_INSIGHTS, days=DAYS, checks=False)
    assert not refused.success and seen == []
    assert f"no Meta access token for {graph}" in _failure(refused)

    # with that host's own token configured, only that token goes there
    monkeypatch.setenv("META_ACCESS_TOKEN", "EAAProductionTokenForTheRealHost000001")
    assert meta.run(ADS_INSIGHTS, days=DAYS, checks=False).success
    assert seen and set(seen) == {"EAAProductionTokenForTheRealHost000001"}
    assert DEMO_ACCESS_TOKEN not in seen
    heard = len(seen)
    # both tokens are kept, each under its own API (switching hosts replaces nothing), and status shows which
    assert TokenStore(meta.url).get("meta", "default", sandbox_api).access_token == DEMO_ACCESS_TOKEN
    assert TokenStore(meta.url).get("meta", "default", graph).access_token == "EAAProductionTokenForTheRealHost000001"
    assert sorted(r["api"] for r in token_rows() if r["platform"] == "meta") == sorted([sandbox_api, graph])
    # the token checks judge the token of the API in use: the stand-in's (unverified: never inspected yet)
    assert "scopes not inspected yet" in meta.check("token_scopes", key=ACCESS_TOKEN)["token_scopes"].description

    # back on the sandbox with no token configured: its own stored token is used, never the other host's
    monkeypatch.delenv("META_ACCESS_TOKEN")
    _use(meta, meta.sandbox.base_url + "/meta", monkeypatch)
    meta.sandbox.admin.reset_requests()
    assert meta.run(ADS_INSIGHTS, days=DAYS, checks=False).success
    assert meta.sandbox.admin.count() > 0 and len(seen) == heard  # the stand-in heard nothing more


def test_a_paging_url_on_another_host_never_gets_the_token(meta, other_host, monkeypatch):
    elsewhere, elsewhere_seen = other_host()
    graph, seen = other_host(next_url=f"{elsewhere}/v24.0/act_1/insights?after=x")
    monkeypatch.setenv("META_ACCESS_TOKEN", "EAAProductionTokenForTheRealHost000002")
    _use(meta, graph, monkeypatch)
    result = meta.run(ADS_INSIGHTS, days=DAYS, checks=False)
    assert seen and elsewhere_seen == []
    assert not result.success  # every account-day failed on it: "a paging URL points at another host"
    assert "points at another host" in _failure(result)


def test_a_token_meta_rejects_is_marked_expired_at_once(meta, monkeypatch):
    token = "EAASoonRejectedSandboxToken00000000003"
    admin = f"{meta.sandbox.base_url}/_admin/meta/tokens"
    assert requests.post(admin, json={"access_token": token, "expires_at": "2027-01-01T00:00:00Z"}, timeout=10).ok
    monkeypatch.setenv("META_ACCESS_TOKEN", token)
    assert meta.run(ADS_INSIGHTS, days=DAYS, checks=False).success
    assert meta.check("token_lifetime", key=ACCESS_TOKEN)["token_lifetime"].severity != dg.AssetCheckSeverity.ERROR

    # Meta ends the session early (190/463): the failing run marks the stored token expired at once
    assert requests.post(admin, json={"access_token": token, "expires_at": "2026-11-20T00:00:00Z"}, timeout=10).ok
    failed = meta.run(ADS_INSIGHTS, days=DAYS, checks=False)
    assert not failed.success and "Session has expired" in _failure(failed)
    [stored] = token_states(psycopg.connect(meta.url), "meta")
    assert stored.status == "expired" and "subcode 463" in stored.last_error and token not in stored.last_error
    # `adpipeline tokens status`, the token check (and so its alert) say the same, before any token job ran
    [row] = [r for r in token_rows() if r["platform"] == "meta"]
    assert row["health"] == "EXPIRED", row
    lifetime = meta.check("token_lifetime", key=ACCESS_TOKEN)["token_lifetime"]
    assert not lifetime.passed and lifetime.severity == dg.AssetCheckSeverity.ERROR
    assert "manual re-authentication required" in lifetime.description
    # and the next run fails fast without calling Meta again
    meta.sandbox.admin.reset_requests()
    assert not meta.run(ADS_INSIGHTS, days=DAYS, checks=False).success
    assert meta.sandbox.admin.count() == 0


def test_an_invalidated_session_is_marked_invalid(meta, monkeypatch):
    token = "EAAPasswordChangedSandboxToken000000004"
    admin = f"{meta.sandbox.base_url}/_admin/meta/tokens"
    requests.post(admin, json={"access_token": token, "expires_at": "2027-01-01T00:00:00Z"}, timeout=10)
    monkeypatch.setenv("META_ACCESS_TOKEN", token)
    assert meta.run(ADS_INSIGHTS, days=DAYS, checks=False).success
    requests.post(admin, json={"access_token": token, "expires_at": "2027-01-01T00:00:00Z", "status": "invalid",
                               "subcode": 460}, timeout=10)
    assert not meta.run(ADS_INSIGHTS, days=DAYS, checks=False).success
    [stored] = token_states(psycopg.connect(meta.url), "meta")
    assert stored.status == "invalid" and "subcode 460" in stored.last_error


def test_a_newer_token_is_not_marked_by_an_older_rejection(warehouse_url):
    store = TokenStore(warehouse_url)
    api = "https://graph.example.test"
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("DELETE FROM ops.platform_tokens WHERE platform = 'unit'")
    store.seed_from_environment("unit", "default", "token-two", api=api)
    assert not store.mark_rejected("unit", "default", "token-one", status="expired", error="old", api=api)
    assert store.get("unit", "default", api).status == "valid"
    assert store.mark_rejected("unit", "default", "token-two", status="invalid", error="refused", api=api)
    assert store.get("unit", "default", api).status == "invalid"
    assert store.get("unit", "default", "https://other.example.test") is None
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("DELETE FROM ops.platform_tokens WHERE platform = 'unit'")
