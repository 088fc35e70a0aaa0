"""The Dagster resource that gives assets and checks the warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg

from adpipeline.warehouse import db, sync_log
from adpipeline.warehouse.embedded import warehouse_url
from adpipeline.warehouse.tokens import TokenStore


class WarehouseResource(dg.ConfigurableResource):
    """Postgres warehouse. `url` unset -> ADPIPELINE_WAREHOUSE_URL, else the embedded server."""

    url: str | None = None

    def dsn(self) -> str:
        return self.url or warehouse_url()

    @contextmanager
    def connection(self, **kwargs) -> Iterator[psycopg.Connection]:
        with db.connect(self.dsn(), **kwargs) as conn:
            yield conn

    def sync(self, **kwargs):
        """One sync attempt (see `sync_log.sync`): data and sync-log row commit together."""
        return sync_log.sync(url=self.dsn(), **kwargs)

    def token_store(self) -> TokenStore:
        return TokenStore(self.dsn())

    def migrate(self) -> list[str]:
        return db.migrate(self.dsn())
