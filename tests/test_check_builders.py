"""The shared check builders at the exact boundaries of the thresholds table."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from adpipeline.monitoring import thresholds as T
from adpipeline.monitoring.checks import (
    all_scopes_loaded_check,
    evaluate_all_scopes_loaded,
    evaluate_data_access,
    evaluate_lateness,
    evaluate_refresh_attempt,
    evaluate_refresh_job_ran,
    evaluate_source_freshness,
    evaluate_token_health,
    evaluate_token_lifetime,
    lateness_check,
    meta_style_token_checks,
)
from adpipeline.warehouse.resource import WarehouseResource
from adpipeline.warehouse.tokens import Token, TokenStore

JAM = ZoneInfo("America/Jamaica")
HOURLY_QUIET = "0 6-22 * * *"
S = timedelta(seconds=1)


def at(hour: int, minute: int = 0, day: int = 23) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=JAM)


def lateness_of(last: datetime | None, now: datetime, cron: str, threshold: T.Threshold, scopes=("a",)):
    successes = {"a": last} if last else {}
    return evaluate_lateness(successes, scopes=list(scopes), cron=cron, timezone="America/Jamaica",
                             threshold=threshold, now=now, what="meta/ads_insights")


def test_quiet_hours_are_not_late():
    result = lateness_of(at(22, 0, day=22), at(3), HOURLY_QUIET, T.HOURLY_FEED_LATENESS)
    assert result.passed and result.metadata["lateness_hours"] == 0
    # 06:30: the 06:00 run may still be running; the night does not count
    morning = lateness_of(at(22, 0, day=22), at(6, 30), HOURLY_QUIET, T.HOURLY_FEED_LATENESS)
    assert morning.passed and morning.metadata["lateness_hours"] == 1.5


def test_last_success_at_six_is_late_at_eleven():
    result = lateness_of(at(6), at(11), HOURLY_QUIET, T.HOURLY_FEED_LATENESS)
    assert result.severity == "ERROR" and result.metadata["lateness_hours"] == 5.0
    assert lateness_of(at(6), at(8), HOURLY_QUIET, T.HOURLY_FEED_LATENESS).passed
    assert lateness_of(at(6), at(8) + S, HOURLY_QUIET, T.HOURLY_FEED_LATENESS).severity == "WARN"


@pytest.mark.parametrize(
    "threshold, cron, ages",
    [
        # (age of the last success, expected severity) around each limit, for cadences without quiet hours
        (T.HOURLY_FEED_LATENESS, "0 * * * *", [(timedelta(hours=2), None), (timedelta(hours=2) + S, "WARN"),
                                                (timedelta(hours=4), "WARN"), (timedelta(hours=4) + S, "ERROR")]),
        (T.DAILY_FEED_LATENESS, "30 4 * * *", [(timedelta(hours=25), None), (timedelta(hours=25) + S, "ERROR")]),
        (T.GA4_LATENESS, "0 */4 * * *", [(timedelta(hours=12), None), (timedelta(hours=12) + S, "WARN"),
                                         (timedelta(hours=24), "WARN"), (timedelta(hours=24) + S, "ERROR")]),
    ],
)
def test_lateness_boundaries(threshold, cron, ages):
    last = at(4, 30)  # a tick of every cadence above
    for age, expected in ages:
        result = lateness_of(last, last + age, cron, threshold)
        assert result.severity == expected, (threshold.signal, age, result.description)


def test_the_worst_scope_decides_and_a_never_loaded_scope_is_an_error():
    successes = {"a": at(10), "b": at(7)}  # b was due again at 08:00: 2.5 h late
    result = evaluate_lateness(successes, scopes=["a", "b"], cron="0 * * * *", timezone="America/Jamaica",
                               threshold=T.HOURLY_FEED_LATENESS, now=at(10, 30), what="x")
    assert result.severity == "WARN" and result.metadata["worst_scope"] == "b"
    never = evaluate_lateness(successes, scopes=["a", "b", "c"], cron="0 * * * *", timezone="America/Jamaica",
                              threshold=T.HOURLY_FEED_LATENESS, now=at(10, 30), what="x")
    assert never.severity == "ERROR" and "never loaded for c" in never.description


def test_all_scopes_loaded():
    ok = ("success", None, at(9))
    assert evaluate_all_scopes_loaded({"a": ok, "b": ok}, scopes=["a", "b"], what="x").passed
    failed = evaluate_all_scopes_loaded({"a": ok, "b": ("failed", "permission denied (#200)", at(9))},
                                        scopes=["a", "b"], what="x")
    assert failed.severity == "ERROR" and failed.metadata["failed_scopes"] == ["b"]
    missing = evaluate_all_scopes_loaded({"a": ok}, scopes=["a", "b"], what="x")
    assert missing.severity == "ERROR" and missing.metadata["never_attempted"] == ["b"]


NOW = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize("days, expected", [(20, None), (14, None), (13, "WARN"), (7, "WARN"), (6, "ERROR"), (-1, "ERROR")])
def test_token_lifetime(days, expected):
    token = Token("meta", "default", expires_at=NOW + timedelta(days=days))
    result = evaluate_token_lifetime(token, NOW, "meta token")
    assert result.severity == expected
    if days < 0:
        assert "manual re-authentication required" in result.description


def test_token_signals():
    system_user = Token("meta", "default", never_expires=True, expires_at=None)
    assert evaluate_token_lifetime(system_user, NOW, "t").passed
    assert evaluate_token_lifetime(None, NOW, "t").severity == "ERROR"
    assert evaluate_data_access(Token("meta", "d", data_access_expires_at=NOW + timedelta(days=13)), NOW, "t").severity == "WARN"
    assert evaluate_data_access(Token("meta", "d", data_access_expires_at=NOW - S), NOW, "t").severity == "ERROR"
    assert evaluate_data_access(Token("meta", "d", data_access_expires_at=NOW + timedelta(days=30)), NOW, "t").passed
    failed_refresh = Token("meta", "d", last_refresh_succeeded=False, last_error="(#190) session expired")
    assert evaluate_refresh_attempt(failed_refresh, "t").severity == "WARN"
    assert evaluate_refresh_attempt(Token("meta", "d", last_refresh_succeeded=True), "t").passed
    ran = lambda hours: Token("meta", "d", last_checked_at=NOW - timedelta(hours=hours))  # noqa: E731
    assert evaluate_refresh_job_ran(ran(2), NOW, "t").passed
    assert evaluate_refresh_job_ran(ran(2.01), NOW, "t").severity == "ERROR"
    tokens = {"austin": Token("breezeway", "austin", status="refresh_failed"), "smoky": Token("breezeway", "smoky")}
    assert evaluate_token_health(tokens, platform="breezeway", scopes=["austin", "smoky"], now=NOW, what="t").severity == "WARN"
    tokens["smoky"] = Token("breezeway", "smoky", status="invalid")
    result = evaluate_token_health(tokens, platform="breezeway", scopes=["austin", "smoky"], now=NOW, what="t")
    assert result.severity == "ERROR" and "smoky EXPIRED" in result.description


# -- through Dagster, on the real warehouse ----------------------------------------------------------

@dg.asset(key=["t_checks", "feed"])
def feed() -> None:
    """A stand-in asset the checks attach to."""


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_builders_run_as_standalone_checks_on_the_sync_log(warehouse_url, conn):
    conn.execute("DELETE FROM ops.etl_sync_log WHERE source = 't_checks'")
    conn.execute(
        "INSERT INTO ops.etl_sync_log (source, scope, entity, sync_type, status, started_at, finished_at, error) VALUES"
        " ('t_checks', 'a', 'feed', 'incremental', 'success', now() - interval '5 hours', now() - interval '5 hours', NULL),"
        " ('t_checks', 'b', 'feed', 'incremental', 'success', now() - interval '10 minutes', now() - interval '10 minutes', NULL),"
        " ('t_checks', 'b', 'feed', 'incremental', 'failed', now() - interval '1 minute', now(), 'HTTP 403 for region b')"
    )
    conn.commit()
    checks = [
        lateness_check(["t_checks", "feed"], source="t_checks", entity="feed", scopes=["a", "b"], cron="*/10 * * * *",
                       timezone="UTC", threshold=T.HOURLY_FEED_LATENESS),
        all_scopes_loaded_check(["t_checks", "feed"], source="t_checks", entity="feed", scopes=["a", "b"]),
    ]
    result = dg.materialize([feed, *checks], resources={"warehouse": WarehouseResource()},
                            selection=dg.AssetSelection.checks(*checks))
    evaluations = _evaluations(result)
    lateness, loaded = evaluations["lateness"], evaluations["all_scopes_loaded"]
    assert not lateness.passed and lateness.severity == dg.AssetCheckSeverity.ERROR
    assert lateness.metadata["worst_scope"].value == "a"
    assert not loaded.passed and loaded.metadata["failed_scopes"].value == ["b"]
    assert all(not spec.blocking for c in checks for spec in c.check_specs)


def test_a_partial_sync_fails_all_scopes_loaded_but_is_not_late(warehouse_url, conn):
    """`partial`: the scope's healthy part landed (fresh, so not late) but part of it is missing (not loaded)."""
    conn.execute("DELETE FROM ops.etl_sync_log WHERE source = 't_checks'")
    conn.execute(
        "INSERT INTO ops.etl_sync_log (source, scope, entity, sync_type, status, started_at, finished_at, error) VALUES"
        " ('t_checks', 'a', 'feed', 'incremental', 'success', now() - interval '9 minutes', now() - interval '9 minutes', NULL),"
        " ('t_checks', 'b', 'feed', 'full', 'partial', now() - interval '2 minutes', now(), 'tasks of 2 of 40 properties failed')"
    )
    conn.commit()
    checks = [
        lateness_check(["t_checks", "feed"], source="t_checks", entity="feed", scopes=["a", "b"], cron="*/10 * * * *",
                       timezone="UTC", threshold=T.HOURLY_FEED_LATENESS),
        all_scopes_loaded_check(["t_checks", "feed"], source="t_checks", entity="feed", scopes=["a", "b"]),
    ]
    result = dg.materialize([feed, *checks], resources={"warehouse": WarehouseResource()},
                            selection=dg.AssetSelection.checks(*checks))
    evaluations = _evaluations(result)
    assert evaluations["lateness"].passed
    loaded = evaluations["all_scopes_loaded"]
    assert not loaded.passed and loaded.severity == dg.AssetCheckSeverity.ERROR
    assert loaded.metadata["failed_scopes"].value == ["b"] and "2 of 40 properties" in loaded.metadata["errors"].value["b"]


def test_token_checks_read_only_non_secret_columns(warehouse_url, conn, monkeypatch):
    conn.execute("DELETE FROM ops.platform_tokens WHERE platform = 't_tok'")
    conn.commit()
    TokenStore(warehouse_url).put(Token("t_tok", "default", access_token="secret-token-value",
                                        expires_at=NOW + timedelta(days=10),
                                        last_checked_at=NOW - timedelta(hours=3)))
    monkeypatch.setenv("ADPIPELINE_TOKEN_KEY", "A" * 43 + "=")  # a different key: checks must not need the real one
    checks = meta_style_token_checks(["t_checks", "feed"], platform="t_tok", scope="default", clock=lambda: NOW)
    result = dg.materialize([feed, *checks], resources={"warehouse": WarehouseResource()},
                            selection=dg.AssetSelection.checks(*checks))
    evaluations = _evaluations(result)
    assert evaluations["token_lifetime"].severity == dg.AssetCheckSeverity.WARN and not evaluations["token_lifetime"].passed
    assert evaluations["token_data_access"].passed and evaluations["token_refresh_attempt"].passed
    assert not evaluations["token_job_ran"].passed and evaluations["token_job_ran"].severity == dg.AssetCheckSeverity.ERROR


def freshness_of(newest: datetime | None, now: datetime, *, cron: str | None = HOURLY_QUIET,
                 threshold: T.Threshold = T.HOURLY_FEED_LATENESS):
    return evaluate_source_freshness(newest, cron=cron, timezone="America/Jamaica", threshold=threshold, now=now,
                                     what="raw_meta.ads_insights")


def test_source_freshness_is_the_age_of_the_newest_rows_without_the_quiet_hours():
    # rows landed at 22:00, the last load of the day: nothing is due until 06:00, so the night is fresh
    assert freshness_of(at(22), at(5, 59, day=24)).passed
    # from the 06:00 tick the clock runs from one interval before it (05:00): 3 h at 08:00, 4 h 1 min at 09:01
    assert freshness_of(at(22), at(8, day=24)).severity == "WARN"
    late = freshness_of(at(22), at(9, 1, day=24))
    assert late.severity == "ERROR" and late.metadata["age_hours"] == 4.02
    assert "no new rows for 4.02 h (ERROR above 4.0 h)" in late.description
    # in the active hours it is plain age, at the exact WARN boundary
    assert freshness_of(at(10), at(12)).passed and freshness_of(at(10), at(12) + S).severity == "WARN"
    # without a cadence (not one of our feeds) it is dbt's plain age
    assert freshness_of(at(22), at(2, 1, day=24), cron=None).severity == "ERROR"


def test_source_freshness_of_an_empty_table_a_daily_feed_and_rows_ahead_of_our_clock():
    empty = freshness_of(None, at(12))
    assert empty.severity == "ERROR" and "no rows loaded yet" in empty.description
    daily = dict(cron="30 4 * * *", threshold=T.DAILY_FEED_LATENESS)  # ERROR only, like raw_breezeway.tasks
    assert freshness_of(at(4, 30), at(5, 30, day=24), **daily).passed
    assert freshness_of(at(4, 30), at(5, 31, day=24), **daily).severity == "ERROR"
    # loaded_at is the server's clock; when it runs ahead of the pipeline's, the rows are fresh, not an error
    assert freshness_of(at(13), at(12)).passed
