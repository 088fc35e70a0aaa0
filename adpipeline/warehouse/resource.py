"""The Dagster resource that gives assets and checks the warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from pydantic import PrivateAttr

from adpipeline.warehouse import db, sync_log
from adpipeline.warehouse.embedded import warehouse_url
from adpipeline.warehouse.tokens import TokenStore


class WarehouseResource(dg.ConfigurableResource):
    """Postgres warehouse. `url` unset -> ADPIPELINE_WAREHOUSE_URL, else the embedded server."""

    url: str | None = None
    _instance: dg.DagsterInstance | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._instance = context.instance  # to fence each sync's commit on its run still being alive

    def dsn(self) -> str:
        return self.url or warehouse_url()

    @contextmanager
    def connection(self, **kwargs) -> Iterator[psycopg.Connection]:
        with db.connect(self.dsn(), **kwargs) as conn:
            yield conn

    def sync(self, **kwargs):
        """One sync attempt (see `sync_log.sync`): data and sync-log row commit together, and only while
        the Dagster run it belongs to is still in progress."""
        return sync_log.sync(url=self.dsn(), fence=self._fence(kwargs.get("run_id")), **kwargs)

    def sync_days(self, **kwargs):
        """Several days of one scope in one attempt (see `sync_log.sync_days`), fenced like `sync`."""
        return sync_log.sync_days(url=self.dsn(), fence=self._fence(kwargs.get("run_id")), **kwargs)

    def _fence(self, run_id: str | None):
        return run_fence(self._instance, run_id) if self._instance is not None and run_id else None

    def token_store(self) -> TokenStore:
        return TokenStore(self.dsn())

    def migrate(self) -> list[str]:
        return db.migrate(self.dsn())


_ENDED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.CANCELING)


def run_fence(instance: dg.DagsterInstance, run_id: str):
    """A sync fence: why the run may no longer commit (failed/cancelled, e.g. by run monitoring), or None."""
    # one light query on one connection: only an ended run is read back (get_run_by_id opens two connections
    # and inspects the runs table's columns first, on every call: sampling found it in every window's commit)
    ended = dg.RunsFilter(run_ids=[run_id], statuses=list(_ENDED))

    def refused() -> str | None:
        for run in instance.get_runs(filters=ended, limit=1):
            return f"its run {run_id} is {run.status.value} (failed or cancelled while this step still ran)"
        return None

    return refused
