"""Connections and versioned schema migrations."""

from __future__ import annotations

import logging
import re
from importlib import resources

import psycopg

from adpipeline.warehouse.embedded import warehouse_url

log = logging.getLogger(__name__)

# Any constant works: it only has to be the same for every migrating process.
_MIGRATION_LOCK = 7_061_999_001


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    return psycopg.connect(url or warehouse_url(), application_name="adpipeline", **kwargs)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped in the package, in order."""
    found = []
    for item in resources.files("adpipeline.warehouse.migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", item.name)
        if match:
            found.append((int(match[1]), match[2], item.read_text()))
    return sorted(found)


def migrate(url: str | None = None) -> list[str]:
    """Apply pending migrations, each in its own transaction; safe to run concurrently. Returns those applied."""
    applied = []
    with connect(url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute("CREATE SCHEMA IF NOT EXISTS ops")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS ops.schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.commit()
            done = {row[0] for row in conn.execute("SELECT version FROM ops.schema_migrations")}
            for version, name, sql in migrations():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute("INSERT INTO ops.schema_migrations (version, name) VALUES (%s, %s)", (version, name))
                log.info("applied migration %04d_%s", version, name)
                applied.append(f"{version:04d}_{name}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
            conn.commit()
    return applied
