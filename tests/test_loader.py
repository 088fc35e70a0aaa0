"""The bulk loader and the sync log on a real Postgres."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import date
from decimal import Decimal

import pandas as pd
import pytest

from adpipeline.warehouse.loader import LoadError, Table, load
from adpipeline.warehouse.sync_log import SyncInProgress, sync, sync_days


def insights_table(schema: str) -> Table:
    return Table(
        schema=schema,
        name="ads_insights",
        columns={"account_id": "text", "ad_id": "text", "date": "date", "spend": "numeric(18,4)", "clicks": "bigint"},
        key=("account_id", "ad_id", "date"),
    )


@pytest.fixture
def table(conn, scratch_schema) -> Table:
    spec = insights_table(scratch_schema)
    conn.execute(spec.create_sql())
    conn.commit()
    return spec


def rows_for(account: str, days: list[int], ads: list[str], spend: str = "1.50") -> list[dict]:
    return [
        {"account_id": account, "ad_id": ad, "date": date(2026, 11, d), "spend": Decimal(spend), "clicks": d,
         "payload": {"ad_id": ad, "spend": spend, "date_start": f"2026-11-{d:02d}"}}
        for d in days for ad in ads
    ]


def snapshot(conn, table: Table) -> list[tuple]:
    return conn.execute(
        f"SELECT account_id, ad_id, date, spend, clicks, payload FROM {table.qualified} ORDER BY 1, 2, 3"
    ).fetchall()


def test_same_batch_twice_gives_the_same_rows(conn, table):
    batch = rows_for("act_1", [1, 2, 3], ["a", "b"])
    first = load(conn, table, batch)
    conn.commit()
    before = snapshot(conn, table)
    second = load(conn, table, batch)
    conn.commit()
    assert (first.processed, first.inserted, first.updated) == (6, 6, 0)
    assert (second.processed, second.inserted, second.updated, second.deleted) == (6, 0, 0, 0)
    assert snapshot(conn, table) == before
    assert before[0][3] == Decimal("1.5000") and before[0][5]["date_start"] == "2026-11-01"


def test_changed_rows_are_updated_and_counted(conn, table):
    load(conn, table, rows_for("act_1", [1, 2], ["a"]))
    result = load(conn, table, rows_for("act_1", [2], ["a"], spend="9.99") + rows_for("act_1", [3], ["a"]))
    conn.commit()
    assert (result.inserted, result.updated) == (1, 1)
    spend = dict((r[2].day, r[3]) for r in snapshot(conn, table))
    assert spend == {1: Decimal("1.5000"), 2: Decimal("9.9900"), 3: Decimal("1.5000")}


def test_last_row_per_key_in_a_batch_wins(conn, table):
    batch = rows_for("act_1", [1], ["a"], spend="1") + rows_for("act_1", [1], ["a"], spend="2")
    result = load(conn, table, batch)
    assert result.inserted == 1
    assert snapshot(conn, table)[0][3] == Decimal("2")


def test_dataframes_load_like_dicts(conn, table):
    frame = pd.DataFrame(rows_for("act_1", [1, 2], ["a", "b"]))
    frame.loc[0, "clicks"] = None  # a missing value becomes NULL, not NaN
    result = load(conn, table, [frame.iloc[:2], frame.iloc[2:]])
    assert result.inserted == 4
    assert conn.execute(f"SELECT count(*) FROM {table.qualified} WHERE clicks IS NULL").fetchone()[0] == 1


def test_replace_scope_removes_rows_that_vanished_upstream(conn, table):
    load(conn, table, rows_for("act_1", [1, 2, 3], ["a", "b", "c"]) + rows_for("act_2", [1, 2], ["z"]))
    conn.commit()
    # Upstream, ad "b" vanished from days 2-3 of act_1; day 1 and act_2 are outside the scope.
    restated = rows_for("act_1", [2, 3], ["a", "c"])
    result = load(conn, table, restated, replace_scope={"account_id": "act_1", "date": (date(2026, 11, 2), date(2026, 11, 3))})
    conn.commit()
    assert result.deleted == 2 and result.inserted == 0
    keys = {(r[0], r[1], r[2].day) for r in snapshot(conn, table)}
    assert ("act_1", "b", 1) in keys and ("act_1", "b", 2) not in keys and ("act_1", "b", 3) not in keys
    assert {k for k in keys if k[0] == "act_2"} == {("act_2", "z", 1), ("act_2", "z", 2)}


def test_replace_scope_with_no_rows_empties_only_that_scope(conn, table):
    load(conn, table, rows_for("act_1", [1, 2], ["a"]))
    result = load(conn, table, [], replace_scope={"account_id": "act_1", "date": (date(2026, 11, 2), date(2026, 11, 2))})
    assert result.deleted == 1
    assert [r[2].day for r in snapshot(conn, table)] == [1]


def test_rows_outside_the_replace_scope_are_refused_and_nothing_changes(conn, table):
    load(conn, table, rows_for("act_1", [1], ["a"]))
    conn.commit()
    before = snapshot(conn, table)
    with pytest.raises(LoadError, match="outside the replace scope"):
        load(conn, table, rows_for("act_1", [5], ["a"]), replace_scope={"account_id": "act_1", "date": (date(2026, 11, 1), date(2026, 11, 1))})
    conn.rollback()
    assert snapshot(conn, table) == before


def test_missing_key_values_are_a_clear_error(conn, table):
    batch = rows_for("act_1", [1], ["a"])
    batch[0]["ad_id"] = None
    with pytest.raises(LoadError, match=r"lack a value for the key \(account_id, ad_id, date\)"):
        load(conn, table, batch)


DAY_1 = {"account_id": "act_1", "date": (date(2026, 11, 1), date(2026, 11, 1))}


def load_both_ways(conn, table: Table, batch: list[dict], scope) -> tuple:
    """The batch into a fresh scope (the direct COPY) and into the same scope holding a row that the batch
    replaces (the general temp-table path): counts and stored rows must agree."""
    fresh = load(conn, table, batch, replace_scope=scope)
    fresh_rows = snapshot(conn, table)
    conn.rollback()
    load(conn, table, rows_for("act_1", [1], ["zz"]))  # a stored row in the scope: conflict handling needed
    general = load(conn, table, batch, replace_scope=scope)
    general_rows = snapshot(conn, table)
    conn.rollback()
    return fresh, fresh_rows, general, general_rows


def test_a_fresh_scope_loads_like_an_occupied_one(conn, table):
    fresh, fresh_rows, general, general_rows = load_both_ways(conn, table, rows_for("act_1", [1], ["a", "b"]), DAY_1)
    assert (fresh.processed, fresh.inserted, fresh.updated, fresh.deleted) == (2, 2, 0, 0)
    assert (general.processed, general.inserted, general.updated, general.deleted) == (2, 2, 0, 1)
    assert fresh_rows == general_rows and len(fresh_rows) == 2


def test_a_key_repeated_in_a_batch_for_a_fresh_scope_keeps_the_last_row(conn, table):
    batch = (rows_for("act_1", [1], ["a", "b"], spend="1") + rows_for("act_1", [1], ["a"], spend="2")
             + rows_for("act_1", [1], ["c"]))
    fresh, fresh_rows, general, general_rows = load_both_ways(conn, table, batch, DAY_1)
    assert fresh_rows == general_rows
    assert [(r[1], r[3]) for r in fresh_rows] == [("a", Decimal("2")), ("b", Decimal("1")), ("c", Decimal("1.5"))]
    assert (fresh.processed, fresh.inserted, fresh.updated) == (4, 3, 0)


def test_a_fresh_scope_still_refuses_rows_outside_it_and_missing_keys(conn, table):
    outside = rows_for("act_1", [1], ["a", "b"]) + rows_for("act_1", [2], ["c"])
    with pytest.raises(LoadError, match="1 row\\(s\\) fall outside the replace scope"):
        load(conn, table, outside, replace_scope=DAY_1)
    conn.rollback()
    no_key = rows_for("act_1", [1], ["a", "b"])
    no_key[1]["ad_id"] = None
    with pytest.raises(LoadError, match="1 row\\(s\\) lack a value for the key"):
        load(conn, table, no_key, replace_scope=DAY_1)
    conn.rollback()
    assert snapshot(conn, table) == []


def test_split_by_counts_each_day_of_a_window_on_both_paths(conn, table):
    window = {"account_id": "act_1", "date": (date(2026, 11, 1), date(2026, 11, 3))}
    first = load(conn, table, rows_for("act_1", [1, 2], ["a", "b"]), replace_scope=window, split_by="date")
    assert {d.day: (p.processed, p.inserted) for d, p in first.parts.items()} == {1: (2, 2), 2: (2, 2)}
    # restated: day 1 unchanged, day 2 lost ad b and changed ad a, day 3 is new
    again = rows_for("act_1", [1], ["a", "b"]) + rows_for("act_1", [2], ["a"], spend="7") + rows_for("act_1", [3], ["c"])
    second = load(conn, table, again, replace_scope=window, split_by="date")
    counts = {d.day: (p.processed, p.inserted, p.updated, p.deleted) for d, p in second.parts.items()}
    assert counts == {1: (2, 0, 0, 0), 2: (1, 0, 1, 1), 3: (1, 1, 0, 0)}
    assert (second.processed, second.inserted, second.updated, second.deleted) == (4, 1, 1, 1)


def test_successful_sync_commits_data_and_log_row_together(warehouse_url, conn, table):
    with sync(source="t_meta", scope="act_1", entity=table.qualified, sync_type="restatement",
              window=(date(2026, 11, 1), date(2026, 11, 2)), run_id="run-1", url=warehouse_url) as s:
        s.load(table, rows_for("act_1", [1, 2], ["a"]))
        s.api_calls = 3
        # Inside the sync nothing is visible to other sessions yet, not even the data.
        assert conn.execute(f"SELECT count(*) FROM {table.qualified}").fetchone()[0] == 0
        conn.rollback()
    row = conn.execute(
        "SELECT status, records_processed, records_inserted, api_calls, window_start, dagster_run_id, finished_at"
        " FROM ops.etl_sync_log WHERE id = %s", (s.id,)).fetchone()
    assert row[:6] == ("success", 2, 2, 3, date(2026, 11, 1), "run-1") and row[6] is not None
    assert len(snapshot(conn, table)) == 2


def test_a_partial_sync_commits_its_data_as_one_partial_row_naming_what_is_missing(warehouse_url, conn, table):
    with sync(source="t_bw", scope="smoky", entity=table.qualified, sync_type="incremental", run_id="run-p",
              url=warehouse_url) as s:
        s.load(table, rows_for("act_1", [1, 2], ["a"]))
        s.partial = "tasks of 1 of 3 properties failed (properties [7]; access_token=secret-value)"
    rows = conn.execute("SELECT status, records_processed, error FROM ops.etl_sync_log WHERE dagster_run_id = 'run-p'"
                        ).fetchall()
    assert len(rows) == 1 and rows[0][:2] == ("partial", 2)  # one row: no success row plus a failed one
    assert "properties [7]" in rows[0][2] and "secret-value" not in rows[0][2]
    assert len(snapshot(conn, table)) == 2  # the healthy part committed


def test_exception_mid_load_leaves_the_table_as_it_was_and_the_log_row_failed(warehouse_url, conn, table):
    load(conn, table, rows_for("act_1", [1, 2], ["a"]))
    conn.commit()
    before = snapshot(conn, table)

    def exploding_rows():
        yield from rows_for("act_1", [1, 2], ["a"], spend="7.77")
        raise ConnectionError("page 2 of act_1 could not be fetched")

    with pytest.raises(ConnectionError):
        with sync(source="t_meta", scope="act_1", entity=table.qualified, sync_type="incremental", url=warehouse_url) as s:
            s.load(table, rows_for("act_1", [3], ["a"]))  # a first load that must roll back too
            s.load(table, exploding_rows())
    assert snapshot(conn, table) == before
    status, error = conn.execute("SELECT status, error FROM ops.etl_sync_log WHERE id = %s", (s.id,)).fetchone()
    assert status == "failed" and "page 2 of act_1 could not be fetched" in error


def test_a_sync_of_several_days_logs_each_day_and_commits_or_fails_them_together(warehouse_url, conn, table):
    days = {date(2026, 11, 1): "restatement", date(2026, 11, 2): "incremental"}
    window = {"account_id": "act_1", "date": (date(2026, 11, 1), date(2026, 11, 2))}
    with sync_days(source="t_meta", scope="act_1", entity=table.qualified, days=days, run_id="run-2",
                   url=warehouse_url) as s:
        s.load(table, rows_for("act_1", [1], ["a", "b"]) + rows_for("act_1", [2], ["a"]), replace_scope=window)
        s.api_calls = 2
    logged = conn.execute(
        "SELECT window_start, window_end, sync_type, status, records_processed, records_inserted, api_calls"
        " FROM ops.etl_sync_log WHERE dagster_run_id = 'run-2' ORDER BY window_start").fetchall()
    assert logged == [(date(2026, 11, 1), date(2026, 11, 1), "restatement", "success", 2, 2, 2),
                      (date(2026, 11, 2), date(2026, 11, 2), "incremental", "success", 1, 1, 0)]
    conn.commit()

    def failing():
        yield from rows_for("act_1", [1], ["a"], spend="5")
        raise ConnectionError("the window's second page could not be fetched")

    with pytest.raises(ConnectionError):
        with sync_days(source="t_meta", scope="act_1", entity=table.qualified, days=days, run_id="run-3",
                       url=warehouse_url) as s:
            s.load(table, failing(), replace_scope=window)
    assert len(snapshot(conn, table)) == 3 and {r[3] for r in snapshot(conn, table)} == {Decimal("1.5")}
    statuses = conn.execute("SELECT status FROM ops.etl_sync_log WHERE dagster_run_id = 'run-3'").fetchall()
    assert statuses == [("failed",), ("failed",)]


def test_a_second_concurrent_sync_of_the_same_scope_is_refused(warehouse_url, table):
    with sync(source="t_bw", scope="austin", entity="reservations", sync_type="full", url=warehouse_url):
        with pytest.raises(SyncInProgress):
            with sync(source="t_bw", scope="austin", entity="reservations", sync_type="full", url=warehouse_url):
                pass


def test_a_window_overlapping_a_running_one_is_refused_and_the_days_it_does_not_share_go_on(warehouse_url, table):
    # the days' locks are taken in one statement: one day held elsewhere refuses the whole window, and the days
    # it does not share go on meanwhile
    first, second, third = date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)
    common = {"source": "t_meta", "scope": "act_9", "entity": table.qualified, "url": warehouse_url}
    with sync_days(days={second: "restatement"}, **common):
        with pytest.raises(SyncInProgress):
            with sync_days(days={first: "restatement", second: "restatement", third: "restatement"}, **common):
                pass
        with sync_days(days={first: "restatement", third: "restatement"}, **common) as s:
            s.load(table, rows_for("act_9", [1, 3], ["a"]),
                   replace_scope={"account_id": "act_9", "date": (first, third)})
    with sync_days(days={first: "restatement", second: "restatement", third: "restatement"}, **common):
        pass


def test_running_row_of_a_killed_run_is_failed_by_the_next_attempt(warehouse_url, conn):
    # A separate process starts a sync and is killed (SIGKILL) in the middle of it.
    script = textwrap.dedent(f"""
        import os, signal
        from adpipeline.warehouse.sync_log import sync
        with sync(source="t_ga4", scope="p1", entity="traffic", sync_type="incremental", run_id="dead-run",
                  url={warehouse_url!r}):
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == -9
    stale = conn.execute("SELECT id FROM ops.etl_sync_log WHERE dagster_run_id = 'dead-run' AND status = 'running'").fetchone()
    assert stale is not None
    conn.commit()
    with sync(source="t_ga4", scope="p1", entity="traffic", sync_type="incremental", url=warehouse_url):
        pass
    status, error = conn.execute("SELECT status, error FROM ops.etl_sync_log WHERE id = %s", stale).fetchone()
    assert status == "failed" and "dead-run" in error and "abandoned" in error


def test_one_million_narrow_rows_load_with_bounded_memory(warehouse_url, scratch_schema):
    # Rows are generated lazily; if the loader buffered them, peak RSS would grow by hundreds of MB.
    script = textwrap.dedent(f"""
        import resource, psycopg
        from adpipeline.warehouse.loader import Table, load
        table = Table({scratch_schema!r}, "narrow", {{"id": "bigint", "value": "integer"}}, ("id",), payload=False)
        with psycopg.connect({warehouse_url!r}) as conn:
            conn.execute(table.create_sql())
            conn.commit()
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            result = load(conn, table, ({{"id": i, "value": i % 1000}} for i in range(1_000_000)))
            conn.commit()
            grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
            count = conn.execute("SELECT count(*) FROM {scratch_schema}.narrow").fetchone()[0]
        print(result.inserted, count, round(grown_mb))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    inserted, count, grown_mb = map(int, out)
    assert inserted == count == 1_000_000
    assert grown_mb < 64, f"loader memory grew by {grown_mb} MB for 1M rows"
