"""Faults on the wire (issue 22, scenarios 1-3): a 429 storm at 100 % usage, 5xx bursts beyond the retry budget
mid-pagination, truncated JSON and dropped connections mid-page. Each: the hourly Meta insights schedule's run
with the fault, then the operator's rerun; the warehouse equals the sandbox's truth for both days touched."""

from __future__ import annotations

from pathlib import Path

from fault_harness import (
    CANARY,
    assert_canary_nowhere,
    assert_meta_truth,
    assert_no_duplicate_keys,
    failed_scopes,
    meta_insights_route,
    sync_errors,
    sync_story,
)
from test_meta_assets import DENVER

from adpipeline.sources.meta.assets import ADS_INSIGHTS

DAYS = ("2026-11-22", "2026-11-23")  # what the hourly schedule pulls at the sandbox's 07:00 in Jamaica
SMALL_PAGES = {"resources": {"meta": {"config": {"page_limit": 5}}}}  # several pages per account-day


def denver_pages(*faults: dict) -> list[dict]:
    """Denver's first day: its account totals and two pages of ads pass, the faults hit what follows (page 3 on)."""
    path = f"/meta/v24.0/{DENVER}/insights"
    return [{"path": path, "count": 3}, *({"path": path, **f} for f in faults)]


def faulted_cursors(sandbox, fault_ids: list[int]) -> list[bool]:
    """For every request one of `fault_ids` hit: was it a follow-up page (carrying a paging cursor)?"""
    return ["after=" in e["query"] for e in sandbox.admin.requests()["recent"] if e["fault"] in fault_ids]


def leaks(pipeline, dagster_env, server_log, outputs=(), secrets=(CANARY,)) -> None:
    assert_canary_nowhere(list(secrets), warehouse_url=pipeline.url, instance_url=dagster_env["ADPIPELINE_DAGSTER_PG_URL"],
                          dagster_home=Path(dagster_env["DAGSTER_HOME"]), server_log=server_log,
                          outputs=[*pipeline.messages, *outputs])


def test_a_5xx_burst_beyond_the_retry_budget_mid_pagination_fails_the_scope_and_the_rerun_completes_it(
        pipeline, dagster_env, warehouse_url, server_log):
    sandbox = pipeline.sandbox
    assert pipeline.scheduled("meta_hierarchy_hourly").success  # the ads the insights name are known
    _, *burst = sandbox.admin.add_faults(denver_pages({"status": 503, "count": None, "body": {"error": {
        "message": "Service temporarily unavailable", "code": 2, "is_transient": True}}}))
    first = pipeline.scheduled("meta_insights_hourly", run_config=SMALL_PAGES)
    assert faulted_cursors(sandbox, burst)[0]  # the burst began mid-pagination, on page 3 of a day

    assert sorted(failed_scopes(first, ADS_INSIGHTS)) == [f"{DENVER} {d}" for d in DAYS]
    assert sync_story(warehouse_url, "meta", "ads_insights", first.run_id) == {"success": 4, "failed": 2}
    errors = sync_errors(warehouse_url, "meta", first.run_id)
    assert len(errors) == 2 and all("HTTP 503" in e and "after 5 attempts — retries exhausted; rerun later" in e
                                    for e in errors), errors
    # a failed scope fails the step (issue 16: one policy): one critical run alert naming the scopes
    check = pipeline.open_alerts()["run_failure:meta_insights_job"]
    assert check[0] == "critical" and DENVER in check[1]

    sandbox.admin.clear_faults()
    rerun = pipeline.scheduled("meta_insights_hourly", run_config=SMALL_PAGES)
    assert rerun.success and failed_scopes(rerun, ADS_INSIGHTS) == []
    assert sync_story(warehouse_url, "meta", "ads_insights", rerun.run_id) == {"success": 6}
    assert assert_meta_truth(pipeline, *DAYS) > 0
    assert_no_duplicate_keys(warehouse_url)
    assert "run_failure:meta_insights_job" not in pipeline.open_alerts()  # resolved by the good run
    leaks(pipeline, dagster_env, server_log)


def test_truncated_json_and_dropped_connections_mid_page_are_retried_and_nothing_is_lost_or_doubled(
        pipeline, dagster_env, warehouse_url, server_log):
    sandbox = pipeline.sandbox
    assert pipeline.scheduled("meta_hierarchy_hourly").success  # the ads the insights name are known
    # page 3: a JSON body cut short, then one whose connection closes mid-body, then it passes; page 4: dropped once
    _, short, abort, _, drop = sandbox.admin.add_faults(denver_pages({"truncate": "short"}, {"truncate": "abort"},
                                                                     {"count": 1}, {"drop": True}))
    result = pipeline.scheduled("meta_insights_hourly", run_config=SMALL_PAGES)

    assert faulted_cursors(sandbox, [short, abort, drop]) == [True] * 3  # each one mid-pagination
    assert result.success and failed_scopes(result, ADS_INSIGHTS) == []
    assert sync_story(warehouse_url, "meta", "ads_insights", result.run_id) == {"success": 6}
    # yesterday is settled; today's spend accrues with the sandbox clock, which the retries' waits moved
    # forward mid-run, so today is compared after the next hourly run (no faults: no waits)
    assert assert_meta_truth(pipeline, DAYS[0], DAYS[0]) > 0
    assert pipeline.scheduled("meta_insights_hourly", run_config=SMALL_PAGES).success
    assert assert_meta_truth(pipeline, *DAYS) > 0
    assert_no_duplicate_keys(warehouse_url)
    assert not pipeline.open_alerts()
    leaks(pipeline, dagster_env, server_log)


def test_a_body_cut_on_every_retry_fails_the_scope_as_transient_and_the_rerun_completes_it(
        pipeline, dagster_env, warehouse_url, server_log):
    sandbox = pipeline.sandbox
    assert pipeline.scheduled("meta_hierarchy_hourly").success  # the ads the insights name are known
    sandbox.admin.add_faults(denver_pages({"truncate": "short", "count": None}))
    first = pipeline.scheduled("meta_insights_hourly", run_config=SMALL_PAGES)
    assert sorted(failed_scopes(first, ADS_INSIGHTS)) == [f"{DENVER} {d}" for d in DAYS]
    errors = sync_errors(warehouse_url, "meta", first.run_id)
    assert errors and all("truncated JSON body" in e and "retries exhausted" in e for e in errors), errors
    assert sync_story(warehouse_url, "meta", "ads_insights", first.run_id) == {"success": 4, "failed": 2}

    sandbox.admin.clear_faults()
    rerun = pipeline.scheduled("meta_insights_hourly", run_config=SMALL_PAGES)
    assert rerun.success and sync_story(warehouse_url, "meta", "ads_insights", rerun.run_id) == {"success": 6}
    assert assert_meta_truth(pipeline, *DAYS) > 0
    assert_no_duplicate_keys(warehouse_url)
    leaks(pipeline, dagster_env, server_log)


def test_one_forbidden_ad_account_fails_alone_while_the_others_load_and_the_rerun_restores_it(
        pipeline, dagster_env, warehouse_url, server_log):
    sandbox = pipeline.sandbox
    assert pipeline.scheduled("meta_hierarchy_hourly").success
    pipeline.meta.script(forbidden_accounts=[DENVER])  # the token lost access to one account
    first = pipeline.scheduled("meta_insights_hourly")
    assert sorted(failed_scopes(first, ADS_INSIGHTS)) == [f"{DENVER} {d}" for d in DAYS]
    assert sync_story(warehouse_url, "meta", "ads_insights", first.run_id)["success"] == 4
    loaded = {a for (a,) in pipeline.rows("SELECT DISTINCT account_id FROM raw_meta.ads_insights")}
    assert DENVER not in loaded and len(loaded) == 2  # the others' data is in
    # red, naming the account (issue 16: one policy): one critical run alert; the others' data is committed
    severity, message = pipeline.open_alerts()["run_failure:meta_insights_job"]
    assert severity == "critical" and DENVER in message and "Action: " in message

    pipeline.meta.script(forbidden_accounts=[])
    rerun = pipeline.scheduled("meta_insights_hourly")
    assert rerun.success and sync_story(warehouse_url, "meta", "ads_insights", rerun.run_id) == {"success": 6}
    assert assert_meta_truth(pipeline, *DAYS) > 0
    assert_no_duplicate_keys(warehouse_url)
    assert "run_failure:meta_insights_job" not in pipeline.open_alerts()
    leaks(pipeline, dagster_env, server_log)
