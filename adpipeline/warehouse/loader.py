"""The one bulk loader every source uses.

Rows stream (iterables of dicts, or DataFrames) through COPY into a temp table, then either upsert on
the table's natural key, or replace a whole scope (one account's date window, one region) so rows that
vanished upstream disappear. The loader never commits: the caller's transaction (see `sync_log.sync`)
makes the data and the sync-log row land together or not at all.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    import pandas as pd

PAYLOAD = "payload"
LOADED_AT = "loaded_at"


class LoadError(ValueError):
    """A batch that cannot be loaded as given (missing key values, rows outside the declared scope)."""


@dataclass(frozen=True)
class Table:
    """A landing table: data columns with Postgres types, the natural key, plus `payload` and `loaded_at`."""

    schema: str
    name: str
    columns: Mapping[str, str]
    key: tuple[str, ...]
    payload: bool = True

    def __post_init__(self) -> None:
        missing = [k for k in self.key if k not in self.columns]
        if missing:
            raise ValueError(f"{self.qualified}: key columns {missing} are not columns")

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.name)

    @property
    def load_columns(self) -> list[str]:
        return [*self.columns, *([PAYLOAD] if self.payload else [])]

    def create_sql(self) -> str:
        """DDL for migrations and tests: natural primary key, payload jsonb, loaded_at."""
        cols = [f'"{c}" {t}' + (" NOT NULL" if c in self.key else "") for c, t in self.columns.items()]
        if self.payload:
            cols.append(f"{PAYLOAD} jsonb")
        cols.append(f"{LOADED_AT} timestamptz NOT NULL DEFAULT now()")
        keys = ", ".join(f'"{k}"' for k in self.key)
        body = ",\n    ".join([*cols, f"PRIMARY KEY ({keys})"])
        return f"CREATE TABLE IF NOT EXISTS {self.qualified} (\n    {body}\n)"

    def asset_metadata(self) -> dict[str, Any]:
        """What the Dagster UI shows of the table: its name and its columns with their Postgres types."""
        columns = [dg.TableColumn(c, t, constraints=dg.TableColumnConstraints(nullable=c not in self.key))
                   for c, t in self.columns.items()]
        if self.payload:
            columns.append(dg.TableColumn(PAYLOAD, "jsonb", description="the API's record as received"))
        columns.append(dg.TableColumn(LOADED_AT, "timestamptz", description="when the row was last loaded",
                                      constraints=dg.TableColumnConstraints(nullable=False)))
        return {"dagster/table_name": f"warehouse.{self.qualified}",
                "dagster/column_schema": dg.TableSchema(columns=columns,
                                                        constraints=dg.TableConstraints(
                                                            other=[f"primary key ({', '.join(self.key)})"]))}


@dataclass
class LoadResult:
    processed: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    def __iadd__(self, other: LoadResult) -> LoadResult:
        self.processed += other.processed
        self.inserted += other.inserted
        self.updated += other.updated
        self.deleted += other.deleted
        return self

    def as_metadata(self) -> dict[str, int]:
        return {f"rows_{k}": v for k, v in vars(self).items()}


Scope = Mapping[str, Any]  # column -> value, or column -> (low, high) inclusive


def load(
    conn: psycopg.Connection,
    table: Table,
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame | Iterable[pd.DataFrame],  # noqa: F821
    *,
    replace_scope: Scope | None = None,
) -> LoadResult:
    """Load rows into `table` inside the caller's transaction.

    Upsert on the natural key; rows identical to the stored ones are not rewritten (and not counted
    as updated). With `replace_scope`, stored rows inside the scope that the batch does not contain
    are deleted, and a batch row outside the scope is an error. Within a batch the last row per key wins.
    """
    temp = sql.Identifier(f"_load_{table.name}")
    cols = table.load_columns
    if conn.autocommit:
        raise ValueError("load() runs inside the caller's transaction; use a connection without autocommit")
    # This statement opens the caller's transaction if none is open yet (psycopg begins implicitly),
    # so the block below is a savepoint inside it and never a transaction of its own that commits.
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {t}").format(t=temp))
    with conn.transaction():  # a savepoint: a failed load leaves the caller's transaction usable
        conn.execute(
            sql.SQL("CREATE TEMP TABLE {t} ON COMMIT DROP AS SELECT {c} FROM {src} WITH NO DATA").format(
                t=temp, c=sql.SQL(", ").join(map(sql.Identifier, cols)), src=table.ident
            )
        )
        # Sorts and hash aggregates over a whole batch: give them memory for this transaction only.
        conn.execute("SELECT set_config('work_mem', '256MB', true)")
        processed = _copy(conn, temp, table, rows)
        # Without statistics the planner assumes a tiny temp table and picks nested loops, which makes
        # the replace-scope anti-join quadratic (9k rows: 20 s); ANALYZE costs ~0.1 s per 1M rows.
        conn.execute(sql.SQL("ANALYZE {t}").format(t=temp))
        _check_keys(conn, temp, table)
        deleted = 0
        if replace_scope is not None:
            deleted = _replace_scope(conn, temp, table, replace_scope)
        inserted, updated = _upsert(conn, temp, table)
    return LoadResult(processed=processed, inserted=inserted, updated=updated, deleted=deleted)


def _copy(conn: psycopg.Connection, temp: sql.Identifier, table: Table, rows) -> int:
    cols = table.load_columns
    types = [*table.columns.values(), *(["jsonb"] if table.payload else [])]
    count = 0
    statement = sql.SQL("COPY {t} ({c}) FROM STDIN").format(t=temp, c=sql.SQL(", ").join(map(sql.Identifier, cols)))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types([_copy_type(t) for t in types])
        for values in _tuples(rows, cols):
            copy.write_row(values)
            count += 1
    return count


def _copy_type(pg_type: str) -> str:
    # COPY needs a base type name: numeric(18,6) -> numeric, varchar(10) -> varchar.
    return pg_type.split("(")[0].strip().lower()


def _tuples(rows, cols: list[str]) -> Iterator[tuple]:
    """Rows in column order, streamed: dicts one by one, DataFrames chunk by chunk."""
    # pandas is imported lazily by whoever builds DataFrames; if it is not loaded, no row is a DataFrame
    # (importing it here would cost every definitions load a second or two).
    pd = sys.modules.get("pandas")
    is_frame = (lambda obj: isinstance(obj, pd.DataFrame)) if pd else (lambda obj: False)
    if is_frame(rows):
        rows = [rows]
    for item in rows:
        if is_frame(item):
            # convert_dtypes keeps integer columns with gaps integral (Int64), not float
            frame = item.reindex(columns=cols).convert_dtypes().astype(object)
            frame = frame.where(frame.notna(), None)
            for values in frame.itertuples(index=False, name=None):
                yield _wrap_payload(values, cols)
        else:
            yield _wrap_payload(tuple(item.get(c) for c in cols), cols)


def _wrap_payload(values: tuple, cols: list[str]) -> tuple:
    if cols[-1] == PAYLOAD and values[-1] is not None and not isinstance(values[-1], Jsonb):
        return (*values[:-1], Jsonb(values[-1]))
    return values


def _check_keys(conn: psycopg.Connection, temp: sql.Identifier, table: Table) -> None:
    null_key = sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier(k)) for k in table.key)
    bad = conn.execute(sql.SQL("SELECT count(*) FROM {t} WHERE {p}").format(t=temp, p=null_key)).fetchone()[0]
    if bad:
        raise LoadError(f"{table.qualified}: {bad} row(s) lack a value for the key ({', '.join(table.key)})")


def _scope_predicate(alias: str, scope: Scope) -> tuple[sql.Composable, list]:
    parts, params = [], []
    for column, value in scope.items():
        ident = sql.Identifier(alias, column)
        if isinstance(value, tuple):
            parts.append(sql.SQL("{} BETWEEN %s AND %s").format(ident))
            params.extend(value)
        else:
            parts.append(sql.SQL("{} = %s").format(ident))
            params.append(value)
    return sql.SQL(" AND ").join(parts), params


def _replace_scope(conn: psycopg.Connection, temp: sql.Identifier, table: Table, scope: Scope) -> int:
    if not scope:
        raise LoadError(f"{table.qualified}: an empty replace scope would replace the whole table")
    unknown = [c for c in scope if c not in table.columns]
    if unknown:
        raise LoadError(f"{table.qualified}: replace scope names unknown columns {unknown}")
    inside, params = _scope_predicate("s", scope)
    outside = conn.execute(
        sql.SQL("SELECT count(*) FROM {t} AS s WHERE NOT ({p})").format(t=temp, p=inside), params
    ).fetchone()[0]
    if outside:
        raise LoadError(f"{table.qualified}: {outside} row(s) fall outside the replace scope {dict(scope)}")
    in_target, params = _scope_predicate("d", scope)
    same_key = sql.SQL(" AND ").join(
        sql.SQL("s.{k} = d.{k}").format(k=sql.Identifier(k)) for k in table.key
    )
    # The target's statistics rarely know the scope (a new day): estimated at one row, the planner picks a
    # nested loop over the temp table, quadratic in the scope's rows (9k rows: 20 s). Hash joins here.
    conn.execute("SELECT set_config('enable_nestloop', 'off', true)")  # a failure rolls it back with the savepoint
    cur = conn.execute(
        sql.SQL("DELETE FROM {target} AS d WHERE {p} AND NOT EXISTS (SELECT 1 FROM {t} AS s WHERE {same})").format(
            target=table.ident, p=in_target, t=temp, same=same_key
        ),
        params,
    )
    conn.execute("SELECT set_config('enable_nestloop', 'on', true)")
    return cur.rowcount


def _upsert(conn: psycopg.Connection, temp: sql.Identifier, table: Table) -> tuple[int, int]:
    cols = table.load_columns
    ident = sql.SQL(", ").join(map(sql.Identifier, cols))
    keys = sql.SQL(", ").join(map(sql.Identifier, table.key))
    changing = [c for c in cols if c not in table.key]
    if changing:
        assignments = sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in [*changing, LOADED_AT]
        )
        differs = sql.SQL("({old}) IS DISTINCT FROM ({new})").format(
            old=sql.SQL(", ").join(sql.Identifier(table.name, c) for c in changing),
            new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in changing),
        )
        conflict = sql.SQL("DO UPDATE SET {a} WHERE {d}").format(a=assignments, d=differs)
    else:
        conflict = sql.SQL("DO NOTHING")
    # Most batches hold each key once: a hash check is cheaper than always sorting for DISTINCT ON,
    # and feeding the upsert unsorted is faster too (measured: benchmarks/loader.py).
    duplicated = conn.execute(
        sql.SQL("SELECT 1 FROM {t} GROUP BY {keys} HAVING count(*) > 1 LIMIT 1").format(t=temp, keys=keys)
    ).fetchone()
    # One COPY into a fresh temp table stores rows in arrival order, so the highest ctid is the last row.
    source = (sql.SQL("SELECT DISTINCT ON ({keys}) {cols} FROM {t} ORDER BY {keys}, ctid DESC") if duplicated
              else sql.SQL("SELECT {cols} FROM {t}")).format(keys=keys, cols=ident, t=temp)
    statement = sql.SQL(
        "WITH src AS ({source}),"
        " written AS (INSERT INTO {target} AS {alias} ({cols}, {loaded}) SELECT {cols}, now() FROM src"
        " ON CONFLICT ({keys}) {conflict} RETURNING (xmax = 0) AS inserted)"
        " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written"
    ).format(
        source=source, keys=keys, cols=ident, target=table.ident, alias=sql.Identifier(table.name),
        loaded=sql.Identifier(LOADED_AT), conflict=conflict,
    )
    inserted, updated = conn.execute(statement).fetchone()
    return inserted, updated
