"""Dagster's instance storage on Postgres, holding its connections in every process that opens the instance.

Dagster's own Postgres storage connects anew for every read and write (a NullPool) everywhere but in its
webserver. A run writes an event per asset partition twice (planned, then materialized), so a range run of
Meta insights over 300 days (2 assets: 1,200 events) paid 1,200+ connects, the new connection's
authentication included: 56 s of a 182 s `dagster asset materialize` (benchmarks/meta_insights.py). This
storage is the same, with its connections kept open as the webserver keeps them, in the CLI, the daemon, run
workers and forked steps alike (they rebuild the instance from its ref, which names this class).

It also turns on Dagster's event batching (DAGSTER_EVENT_BATCH_SIZE, off by default in OSS): a range run's
per-partition materializations are then written in one INSERT instead of one each. The 300-day range's
"outputs" part took 6-35 s (600 materializations, by load) and 0.6 s batched (benchmarks/meta_insights.py).
"""

from __future__ import annotations

import os

from dagster_postgres import DagsterPostgresStorage

# Dagster reads it from the environment when a step reports its outputs, in whichever process opened the instance;
# a value set by the operator wins
EVENT_BATCH_SIZE_ENV, EVENT_BATCH_SIZE = "DAGSTER_EVENT_BATCH_SIZE", "1000"


class HeldConnectionsPostgresStorage(DagsterPostgresStorage):
    @classmethod
    def from_config_value(cls, inst_data, config_value):
        # Dagster's storage, built by its own code from the same config; inst_data names this class
        storage = super().from_config_value(inst_data, config_value)
        os.environ.setdefault(EVENT_BATCH_SIZE_ENV, EVENT_BATCH_SIZE)
        for part in (storage.run_storage, storage.event_log_storage, storage.schedule_storage):
            # one connection held per part, more while threads overlap; no statement timeout (as before)
            part.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=10)
            # A held connection the server dropped (a warehouse restart) is found by a ping when it is taken and
            # replaced, instead of failing the next event write as it otherwise would (SQLAlchemy's pool_pre_ping;
            # Dagster's optimize_for_webserver does not pass it through): one round trip, not a connect.
            part._engine.pool._pre_ping = True
        return storage
