"""Breezeway under faults (issue 22), the real `breezeway_reservations` schedule: one run per region.

Scenario 4: a region's API access is revoked while its run is paging reservations, after other regions loaded:
every data call answers 401, a refreshed token too. The run stops with one classified message, the region's token
is marked invalid (the others stay valid), nothing loaded is lost and the other regions load; once access is
restored (the runbook's step: the region's credentials match the account again), the rerun of the region converges.
"""

from __future__ import annotations

import os

import requests
from fault_harness import assert_breezeway_truth, assert_no_duplicate_keys, failure_messages, sync_story
from test_faults_http import leaks

from adpipeline.config import get_config
from adpipeline.sources.breezeway.resources import BreezewayResource
from adpipeline.sources.breezeway.tables import RESERVATIONS
from adpipeline.warehouse.tokens import TokenStore

RESERVATION_PATH = "/breezeway/public/inventory/v1/reservation"
RESERVATION_ROUTE = f"GET {RESERVATION_PATH}"
REFRESH_ROUTE = "POST /breezeway/public/auth/v1/refresh"
REVOKED = {"message": "API access has been revoked for this company"}
MAX_IN_FLIGHT = BreezewayResource().max_concurrency  # reservation pages in flight at once
COMPANY = {r.code: r.company_id for r in get_config().breezeway.regions}


def settings(sandbox, **changes) -> None:
    assert requests.post(f"{sandbox.base_url}/_admin/breezeway/settings", json=changes, timeout=10).ok


def test_a_region_revoked_mid_run_fails_alone_with_an_invalid_token_and_converges_once_access_is_back(
        pipeline, warehouse_url, dagster_env, server_log):
    sandbox = pipeline.sandbox
    job, ticks = pipeline.run_requests("breezeway_reservations")
    regions = [r.partition_key for r in ticks]
    assert len(regions) >= 3
    victim = regions[1]  # after the first region loaded
    results = {}
    for request in ticks:
        if request.partition_key == victim:  # two reservation pages pass, then the company's access is revoked
            sandbox.admin.reset_requests()
            sandbox.admin.add_faults([{"path": RESERVATION_PATH, "count": 2},
                                      {"path": RESERVATION_PATH, "status": 401, "body": REVOKED, "count": None}])
        results[request.partition_key] = pipeline.run_job(job, tags=request.tags, partition_key=request.partition_key)
        if request.partition_key == victim:  # what the faults stood for, from now on for real
            counts = sandbox.admin.requests()["by_route"]
            sandbox.admin.clear_faults()
            settings(sandbox, revoked_companies=[COMPANY[victim]])

    assert not results[victim].success
    assert all(results[r].success for r in regions if r != victim)
    # mid-run: two pages, then 401s to the calls in flight; one refresh (its fresh token is refused too), then the
    # verdict stops every thread: no second refresh, no page sent after it
    assert counts[RESERVATION_ROUTE] > 2 and counts[REFRESH_ROUTE] == 1, counts
    assert counts[RESERVATION_ROUTE] <= 2 + 2 * MAX_IN_FLIGHT  # each call in flight: its 401 and one retry
    (message,) = failure_messages(results[victim])
    assert victim in message and "revoked" in message and "re-authenticate" in message, message
    severity, alert = pipeline.open_alerts()["run_failure:breezeway_reservations_job"]
    assert severity == "critical" and victim in alert
    tokens = {t.scope: t for t in TokenStore(warehouse_url).all() if t.platform == "breezeway"}
    assert tokens[victim].status == "invalid" and "refused a freshly issued token" in tokens[victim].last_error
    assert {tokens[r].status for r in regions if r != victim} == {"valid"}
    assert set(sync_story(warehouse_url, "breezeway", "reservations", results[victim].run_id)) == {"failed"}
    # the region's pages never half-landed; every other region equals the truth
    assert pipeline.rows("SELECT count(*) FROM raw_breezeway.reservations WHERE region_code = %s", victim) == [(0,)]
    assert assert_breezeway_truth(pipeline, [r for r in regions if r != victim]) > 0

    # the runbook's step: the region's credentials match the account (its access restored); rerun its partition
    settings(sandbox, revoked_companies=[])
    rerun = pipeline.run_job(job, tags=ticks[1].tags, partition_key=victim)
    assert rerun.success and sync_story(warehouse_url, "breezeway", "reservations", rerun.run_id) == {"success": 1}
    assert assert_breezeway_truth(pipeline, regions) > 0
    assert_no_duplicate_keys(warehouse_url, [RESERVATIONS])
    assert "run_failure:breezeway_reservations_job" not in pipeline.open_alerts()
    tokens = {t.scope: t for t in TokenStore(warehouse_url).all() if t.platform == "breezeway"}
    assert tokens[victim].status == "valid"
    client_secrets = [os.environ[r.client_secret_var] for r in get_config().breezeway.regions]
    leaks(pipeline, dagster_env, server_log, secrets=[*client_secrets, *(t.access_token for t in tokens.values()),
                                                      *(t.refresh_token for t in tokens.values())])
