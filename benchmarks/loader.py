"""Loader throughput beside raw COPY of the same rows into the same server, in one run.

    uv run --frozen python benchmarks/loader.py [--rows 1000000]

Uses ADPIPELINE_WAREHOUSE_URL or the embedded warehouse (started if needed). Prints rows/s for:
  raw COPY        psycopg COPY ... FROM STDIN straight into an empty table (the floor of any loader)
  raw COPY, keyed the same into an empty table with the landing table's primary key
  loader, fresh   load() with replace_scope into an empty scope (a day loaded for the first time): direct COPY
  loader, new     adpipeline's load(): COPY into a temp table, key check, upsert (all rows new)
  loader, same    the same batch again (every row compared, none rewritten)
  loader, replace the same batch with replace_scope (delete-vanished + upsert; MERGE on PostgreSQL 17+)
  loader, restated the batch again with replace_scope, every 10th row's spend changed (a restated window)
"""

from __future__ import annotations

import argparse
import time
from datetime import date, timedelta
from decimal import Decimal

import psycopg

from adpipeline.warehouse.embedded import warehouse_url
from adpipeline.warehouse.loader import Table, load

SCHEMA = "bench_loader"
START = date(2026, 1, 1)


def rows(n: int, restated: bool = False):
    for i in range(n):
        yield {"account_id": f"act_{i % 7}", "ad_id": str(100_000 + i // 365), "date": START + timedelta(days=i % 365),
               "spend": Decimal(i % 10_000) / 100 + (1 if restated and i % 10 == 0 else 0), "clicks": i % 97}


KEYED: list[float] = []  # the keyed raw COPY's time: every loader line says how many times it took


def timed(label: str, n: int, fn) -> None:
    started = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - started
    ratio = f"  {elapsed / KEYED[0]:5.2f}x keyed raw COPY" if KEYED else ""
    print(f"{label:18} {n:>10,} rows  {elapsed:7.2f} s  {n / elapsed:>10,.0f} rows/s{ratio}")
    if label == "raw COPY, keyed":
        KEYED.append(elapsed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    n = parser.parse_args().rows
    url = warehouse_url()
    table = Table(SCHEMA, "insights", {"account_id": "text", "ad_id": "text", "date": "date", "spend": "numeric(18,4)",
                                       "clicks": "bigint"}, ("account_id", "ad_id", "date"), payload=False)
    with psycopg.connect(url) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(table.create_sql())
        conn.execute(f"CREATE TABLE {SCHEMA}.raw_copy (account_id text, ad_id text, date date, spend numeric(18,4), clicks bigint)")
        conn.commit()
        print(f"server: {conn.info.host}:{conn.info.port}  postgres {conn.info.server_version}")

        def raw_copy(target: str = f"{SCHEMA}.raw_copy"):
            with conn.cursor() as cur, cur.copy(f"COPY {target} (account_id, ad_id, date, spend, clicks) FROM STDIN") as copy:
                copy.set_types(["text", "text", "date", "numeric", "int8"])
                for r in rows(n):
                    copy.write_row((r["account_id"], r["ad_id"], r["date"], r["spend"], r["clicks"]))
            conn.commit()

        def raw_copy_keyed():
            conn.execute(f"CREATE TABLE {SCHEMA}.keyed (LIKE {table.qualified} INCLUDING ALL)")
            raw_copy(f"{SCHEMA}.keyed")

        def loader_fresh():
            load(conn, table, rows(n), replace_scope={"date": (START, START + timedelta(days=364))})
            conn.execute(f"TRUNCATE {table.qualified}")  # timed too (a hair): the next phases start empty
            conn.commit()

        def loader():
            load(conn, table, rows(n))
            conn.commit()

        def loader_replace():
            load(conn, table, rows(n), replace_scope={"date": (START, START + timedelta(days=364))})
            conn.commit()

        timed("raw COPY", n, raw_copy)
        timed("raw COPY, keyed", n, raw_copy_keyed)
        timed("loader, fresh", n, loader_fresh)
        timed("loader, new", n, loader)
        timed("loader, same", n, loader)
        def loader_restated():
            load(conn, table, rows(n, restated=True), replace_scope={"date": (START, START + timedelta(days=364))})
            conn.commit()

        timed("loader, replace", n, loader_replace)
        timed("loader, restated", n, loader_restated)
        conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
        conn.commit()


if __name__ == "__main__":
    main()
