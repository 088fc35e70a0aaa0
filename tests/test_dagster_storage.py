"""The project's Dagster instance holds its Postgres connections in every process that opens it (the CLI's
`dagster asset materialize`, the daemon, run workers, forked steps), not only in Dagster's webserver: with
Dagster's default every event of a run paid a new connection (issue 23: 1,200 events for a 300-day range)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg
import pytest
import yaml

from adpipeline.stack import prepare_dagster_home
from adpipeline.warehouse.embedded import DAGSTER_URL_ENV

DATABASE = "dagster_storage_test"


@pytest.fixture
def storage_url(warehouse_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    # psycopg2, as the stack's instance URL (`embedded.dagster_storage_url`): Dagster's storage is written for it
    url = urlunsplit(urlsplit(warehouse_url)._replace(scheme="postgresql+psycopg2", path=f"/{DATABASE}"))
    monkeypatch.setenv(DAGSTER_URL_ENV, url)
    return url


def _sessions(warehouse_url: str) -> int:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        return conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (DATABASE,)).fetchone()[0]


def _connections_for(instance: dg.DagsterInstance, warehouse_url: str, times: int = 20) -> int:
    """New Postgres sessions while the instance reads runs and writes asset events `times` times each."""
    before = _sessions(warehouse_url)
    for i in range(times):
        instance.get_runs(limit=1)
        instance.report_runless_asset_event(dg.AssetMaterialization("probe", partition=f"2026-01-{i + 1:02d}"))
    return _sessions(warehouse_url) - before


def test_dagsters_own_postgres_storage_connects_for_every_read_and_write(warehouse_url, storage_url, tmp_path):
    # what the project's instance improves on: Dagster's default outside its webserver
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump({"storage": {"postgres": {"postgres_url": storage_url}}}))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert _connections_for(instance, warehouse_url) >= 40


def test_the_projects_instance_holds_its_connections_and_so_do_instances_rebuilt_from_its_ref(
        warehouse_url, storage_url, tmp_path: Path):
    prepare_dagster_home(tmp_path)  # the DAGSTER_HOME every `adpipeline` command and the benchmarks use
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert _connections_for(instance, warehouse_url) <= 4  # the run, event and schedule storages' own
        # a run worker or a forked step process builds its instance from the ref
        with dg.DagsterInstance.from_ref(instance.get_ref()) as rebuilt:
            assert _connections_for(rebuilt, warehouse_url) <= 4
            assert len(rebuilt.get_asset_records([dg.AssetKey("probe")])) == 1  # same storage, written and read


def test_a_held_connection_the_server_dropped_is_replaced_not_raised(warehouse_url, storage_url, tmp_path: Path):
    """A warehouse restart (or an idle-timeout kill) drops every held connection: the daemon's next tick, a run
    worker's next event must reconnect, as they did when each connected anew."""
    prepare_dagster_home(tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        _connections_for(instance, warehouse_url, times=2)
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            dropped = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                   " WHERE datname = %s AND pid <> pg_backend_pid()", (DATABASE,)).fetchone()[0]
        assert dropped >= 1
        instance.report_runless_asset_event(dg.AssetMaterialization("probe", partition="2026-02-01"))
        assert instance.get_runs(limit=1) == []
        assert len(instance.get_asset_records([dg.AssetKey("probe")])) == 1


@dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"),
          backfill_policy=dg.BackfillPolicy.single_run())
def daily_probe(context) -> None:
    context.log.info(f"{len(context.partition_keys)} days")


def _materialization_writes(instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """(single writes, batch writes) of materialization events while one run materializes 10 days as a range."""
    storage, counts = instance.event_log_storage, {"single": 0, "batch": 0}
    store_event, store_event_batch = storage.store_event, storage.store_event_batch

    def single(event):
        counts["single"] += event.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        return store_event(event)

    def batch(events):  # the run's planned events come as a batch too
        counts["batch"] += any(e.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION for e in events)
        return store_event_batch(events)

    monkeypatch.setattr(storage, "store_event", single)
    monkeypatch.setattr(storage, "store_event_batch", batch)
    result = dg.materialize([daily_probe], instance=instance, tags={
        "dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-01-10"})
    assert result.success
    assert len(instance.get_materialized_partitions(dg.AssetKey("daily_probe"))) == 10  # all written, either way
    return counts["single"], counts["batch"]


@pytest.mark.parametrize("operator_setting, writes", [(None, (0, 1)), ("0", (10, 0))])
def test_a_range_runs_materializations_are_written_in_one_batch_unless_the_operator_says_otherwise(
        storage_url, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operator_setting, writes):
    from adpipeline.warehouse.dagster_storage import EVENT_BATCH_SIZE_ENV

    monkeypatch.setenv(EVENT_BATCH_SIZE_ENV, operator_setting or "")  # restored after the test
    if operator_setting is None:
        monkeypatch.delenv(EVENT_BATCH_SIZE_ENV)
    prepare_dagster_home(tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert _materialization_writes(instance, monkeypatch) == writes
