"""Tokens dying mid-sync (issue 22, scenario 4): Meta answers 190 (session invalidated) from the fourth insights
call on, while the accounts' windows are fetched in parallel (the default). The calls already in flight are
refused too, none is retried and none is sent after the first refusal; the token is marked refused, the user gets
one critical message with the manual recovery step; the operator follows it (`adpipeline tokens exchange meta -`)
and the rerun converges."""

from __future__ import annotations

import os

from fault_harness import (
    CANARY,
    assert_meta_truth,
    assert_no_duplicate_keys,
    cli,
    failure_messages,
    issue_meta_token,
    meta_insights_route,
    sync_story,
)
from test_faults_http import DAYS, SMALL_PAGES, leaks

from adpipeline.sources.meta.resources import MetaResource
from adpipeline.warehouse.tokens import TokenStore

INVALIDATED = {"error": {"message": "Error validating access token: The session has been invalidated because the user"
                         " changed their password or Facebook has changed the session for security reasons.",
                         "type": "OAuthException", "code": 190, "error_subcode": 460}}
SHORT_LIVED = "EAAFaultSuiteShortLived0x9a7"  # what the operator pastes into `tokens exchange`: a secret too


def test_meta_token_revoked_after_page_3_stops_the_run_with_the_recovery_step_and_the_rerun_converges(
        pipeline, dagster_env, warehouse_url, server_log):
    sandbox = pipeline.sandbox
    assert pipeline.scheduled("meta_hierarchy_hourly").success
    sandbox.admin.reset_requests()
    # three insights pages pass, then the user's session is invalidated (password changed): every call is a 190
    _, dead = sandbox.admin.add_faults([{"path_regex": "/meta/.*", "count": 3},
                                        {"path_regex": "/meta/.*", "status": 400, "body": INVALIDATED, "count": None}])
    first = pipeline.scheduled("meta_insights_hourly", run_config=SMALL_PAGES)
    issue_meta_token(sandbox, CANARY, status="invalidated")  # what the fault stood for, from now on for real

    assert not first.success
    # three calls passed; then only the calls already in flight beside the first refusal reached Meta, each once
    # (none retried), and nothing was sent after it: at most one refused call per worker
    refused = [(e["path"], e["query"]) for e in sandbox.admin.requests()["recent"] if e["fault"] == dead]
    assert 1 <= len(refused) <= MetaResource().concurrency and len(set(refused)) == len(refused), refused
    assert meta_insights_route(sandbox) == 3 + len(refused)
    (message,) = failure_messages(first)
    assert "Meta access token unusable (the password changed): manual re-authentication required" in message
    assert "adpipeline tokens exchange meta -" in message
    (severity, alert), = pipeline.open_alerts().values()
    assert severity == "critical" and "adpipeline tokens exchange meta -" in alert
    assert pipeline.rows("SELECT status FROM ops.platform_tokens WHERE platform = 'meta'") == [("invalid",)]
    # the three accounts' windows (two days each) all started at once: every day of each is failed (the windows
    # that met the 190, and those whose next call the client refused unsent); nothing succeeded or is left running
    assert sync_story(warehouse_url, "meta", "ads_insights", first.run_id) == {"failed": 6}
    assert pipeline.rows("SELECT count(*) FROM raw_meta.ads_insights") == [(0,)]  # no scope half-written

    # the operator follows the recovery step: a new short-lived token, exchanged and stored by the CLI
    sandbox.admin.clear_faults()
    issue_meta_token(sandbox, SHORT_LIVED, days=1)
    exchange = cli("tokens", "exchange", "meta", "-", env={**os.environ, "ADPIPELINE_WAREHOUSE_URL": warehouse_url},
                   stdin=SHORT_LIVED + "\n")
    assert exchange.returncode == 0, exchange.stderr
    assert "exchanged and stored a long-lived token; verified with debug_token" in exchange.stdout
    (stored,) = [t for t in TokenStore(warehouse_url).all() if t.platform == "meta"]
    assert stored.status == "valid" and stored.access_token not in (CANARY, SHORT_LIVED)
    rerun = pipeline.scheduled("meta_insights_hourly", run_config=SMALL_PAGES)
    assert rerun.success and sync_story(warehouse_url, "meta", "ads_insights", rerun.run_id) == {"success": 6}
    assert assert_meta_truth(pipeline, *DAYS) > 0
    assert_no_duplicate_keys(warehouse_url)
    assert not pipeline.open_alerts()  # the run's alert resolved by the recovery
    leaks(pipeline, dagster_env, server_log, secrets=[CANARY, SHORT_LIVED, stored.access_token],
          outputs=[exchange.stdout, exchange.stderr])
