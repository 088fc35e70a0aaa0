"""The one bulk loader every source uses.

Rows stream (iterables of dicts, or DataFrames) through COPY into a temp table, then either upsert on
the table's natural key, or replace a whole scope (one account's date window, one region) so rows that
vanished upstream disappear (on PostgreSQL 17+ a replace writes with one MERGE, a hash join, instead of
INSERT ... ON CONFLICT's index probe per row). A replace of a scope that holds no rows yet (a day loaded for the first time:
the common case) COPYs straight into the table instead, as fast as a raw COPY into it. The loader never commits: the caller's transaction (see `sync_log.sync`)
makes the data and the sync-log row land together or not at all.
"""

from __future__ import annotations

import itertools
import operator
import sys
from collections.abc import Iterable, Iterator, Mapping
from collections import Counter
from dataclasses import dataclass, field
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


COUNTS = ("processed", "inserted", "updated", "deleted")


@dataclass
class LoadResult:
    processed: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    # with load(split_by=column): the counts per value of that column (e.g. per day of a window)
    parts: dict[Any, LoadResult] = field(default_factory=dict, repr=False, compare=False)

    def __iadd__(self, other: LoadResult) -> LoadResult:
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def as_metadata(self) -> dict[str, int]:
        return {f"rows_{k}": getattr(self, k) for k in COUNTS}


def _part(parts: dict[Any, LoadResult], value: Any) -> LoadResult:
    return parts.setdefault(value, LoadResult())


Scope = Mapping[str, Any]  # column -> value, or column -> (low, high) inclusive


def load(
    conn: psycopg.Connection,
    table: Table,
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame | Iterable[pd.DataFrame],  # noqa: F821
    *,
    replace_scope: Scope | None = None,
    split_by: str | None = None,
) -> LoadResult:
    """Load rows into `table` inside the caller's transaction.

    Upsert on the natural key; rows identical to the stored ones are not rewritten (and not counted
    as updated). With `replace_scope`, stored rows inside the scope that the batch does not contain
    are deleted, and a batch row outside the scope is an error. Within a batch the last row per key wins.
    With `split_by` (a column) the result's `parts` hold the counts per value of that column.
    """
    temp = sql.Identifier(f"_load_{table.name}")
    cols = table.load_columns
    if conn.autocommit:
        raise ValueError("load() runs inside the caller's transaction; use a connection without autocommit")
    if split_by is not None and split_by not in table.columns:
        raise ValueError(f"{table.qualified}: split_by names an unknown column {split_by!r}")
    split = sql.Identifier(split_by) if split_by else sql.SQL("NULL")
    parts: dict[Any, LoadResult] = {}
    values = _tuples(rows, cols)
    # This statement opens the caller's transaction if none is open yet (psycopg begins implicitly),
    # so the block below is a savepoint inside it and never a transaction of its own that commits.
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {t}").format(t=temp))
    with conn.transaction():  # a savepoint: a failed load leaves the caller's transaction usable
        copied = False
        if replace_scope is not None and _scope_is_empty(conn, table, replace_scope):
            copied, values = _copy_new(conn, table, values, replace_scope, split_by, parts)
        if values is not None:  # upsert (with a replace) or, after a direct COPY stopped, the rest of the rows
            conn.execute(
                sql.SQL("CREATE TEMP TABLE {t} ON COMMIT DROP AS SELECT {c} FROM {src} WITH NO DATA").format(
                    t=temp, c=sql.SQL(", ").join(map(sql.Identifier, cols)), src=table.ident
                )
            )
            # Sorts and hash aggregates over a whole batch: give them memory for this transaction only.
            conn.execute("SELECT set_config('work_mem', '256MB', true)")
            _copy(conn, temp, table, values)
            # Without statistics the planner assumes a tiny temp table and picks nested loops, which makes
            # the replace-scope anti-join quadratic (9k rows: 20 s); ANALYZE costs ~0.1 s per 1M rows.
            conn.execute(sql.SQL("ANALYZE {t}").format(t=temp))
            _check_keys(conn, temp, table)
            for value, n in conn.execute(sql.SQL("SELECT {s}, count(*) FROM {t} GROUP BY 1").format(s=split, t=temp)):
                _part(parts, value).processed += n
            if replace_scope is not None:
                _check_inside(conn, temp, table, replace_scope)
                if not copied:  # after a direct COPY the scope holds only this batch's rows: nothing vanished
                    for value, n in _delete_vanished(conn, temp, table, replace_scope, split):
                        _part(parts, value).deleted += n
            merge = replace_scope is not None and conn.info.server_version >= MERGE_RETURNING_SINCE
            for value, inserted, updated in (_merge(conn, temp, table, split, replace_scope) if merge
                                             else _upsert(conn, temp, table, split)):
                part = _part(parts, value)
                part.inserted += inserted
                # the scope was empty: every key is new, an "update" only met an earlier row of this batch
                part.updated += 0 if copied else updated
    total = LoadResult(parts=parts if split_by else {})
    for part in parts.values():
        total += part
    return total


def _copy(conn: psycopg.Connection, target: sql.Composable, table: Table, values: Iterator[tuple]) -> int:
    cols = table.load_columns
    types = [*table.columns.values(), *(["jsonb"] if table.payload else [])]
    count = 0
    statement = sql.SQL("COPY {t} ({c}) FROM STDIN").format(t=target, c=sql.SQL(", ").join(map(sql.Identifier, cols)))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types([_copy_type(t) for t in types])
        for row in values:
            copy.write_row(row)
            count += 1
    return count


def _scope_is_empty(conn: psycopg.Connection, table: Table, scope: Scope) -> bool:
    _validate_scope(table, scope)
    inside, params = _scope_predicate("d", scope)
    return not conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {target} AS d WHERE {p})").format(target=table.ident, p=inside), params
    ).fetchone()[0]


def _copy_new(conn: psycopg.Connection, table: Table, values: Iterator[tuple], scope: Scope,
              split_by: str | None, parts: dict[Any, LoadResult]) -> tuple[bool, Iterator[tuple] | None]:
    """COPY rows straight into the table while each is plainly insertable (key present, inside the scope, key
    not seen before in this batch), counting them into `parts`. Returns whether any row was copied and, if it
    had to stop, the rows not copied yet."""
    cols = table.load_columns
    positions = [cols.index(k) for k in table.key]
    # itemgetter of two or more positions gives a tuple; a one-column key gets a dummy second position
    key_of = operator.itemgetter(*positions) if len(positions) > 1 else operator.itemgetter(positions[0], positions[0])
    bounds = [(cols.index(c), *(v if isinstance(v, tuple) else (v, v))) for c, v in scope.items()]
    split_at = cols.index(split_by) if split_by else None
    counts: Counter = Counter()
    seen: set[int] = set()  # hashes: a collision only sends the rest the general way
    stopped: list[tuple] = []

    def plain() -> Iterator[tuple]:
        for row in values:
            key = key_of(row)
            digest = hash(key)
            try:
                ok = None not in key and digest not in seen
                for i, low, high in bounds:
                    ok = ok and low <= row[i] <= high
            except TypeError:  # a value of another type than the scope's (e.g. a date as text): let SQL judge
                ok = False
            if not ok:
                stopped.append(row)
                return
            seen.add(digest)
            counts[None if split_at is None else row[split_at]] += 1
            yield row

    copied = _copy(conn, table.ident, table, plain())
    for value, n in counts.items():
        part = _part(parts, value)
        part.processed += n
        part.inserted += n
    return copied > 0, (itertools.chain(stopped, values) if stopped else None)


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
    wrap = _wrap_payload if cols[-1] == PAYLOAD else (lambda values: values)
    for item in rows:
        if is_frame(item):
            # convert_dtypes keeps integer columns with gaps integral (Int64), not float
            frame = item.reindex(columns=cols).convert_dtypes().astype(object)
            frame = frame.where(frame.notna(), None)
            for values in frame.itertuples(index=False, name=None):
                yield wrap(values)
        else:
            yield wrap(tuple(map(item.get, cols)))


def _wrap_payload(values: tuple) -> tuple:
    if values[-1] is not None and not isinstance(values[-1], Jsonb):
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


def _validate_scope(table: Table, scope: Scope) -> None:
    if not scope:
        raise LoadError(f"{table.qualified}: an empty replace scope would replace the whole table")
    unknown = [c for c in scope if c not in table.columns]
    if unknown:
        raise LoadError(f"{table.qualified}: replace scope names unknown columns {unknown}")


def _check_inside(conn: psycopg.Connection, temp: sql.Identifier, table: Table, scope: Scope) -> None:
    _validate_scope(table, scope)
    inside, params = _scope_predicate("s", scope)
    outside = conn.execute(
        sql.SQL("SELECT count(*) FROM {t} AS s WHERE NOT ({p})").format(t=temp, p=inside), params
    ).fetchone()[0]
    if outside:
        raise LoadError(f"{table.qualified}: {outside} row(s) fall outside the replace scope {dict(scope)}")


def _delete_vanished(conn: psycopg.Connection, temp: sql.Identifier, table: Table, scope: Scope,
                     split: sql.Composable) -> list[tuple[Any, int]]:
    in_target, params = _scope_predicate("d", scope)
    same_key = sql.SQL(" AND ").join(
        sql.SQL("s.{k} = d.{k}").format(k=sql.Identifier(k)) for k in table.key
    )
    # The target's statistics rarely know the scope (a new day): estimated at one row, the planner picks a
    # nested loop over the temp table, quadratic in the scope's rows (9k rows: 20 s). Hash joins here.
    conn.execute("SELECT set_config('enable_nestloop', 'off', true)")  # a failure rolls it back with the savepoint
    deleted = conn.execute(
        sql.SQL("WITH gone AS (DELETE FROM {target} AS d WHERE {p} AND NOT EXISTS (SELECT 1 FROM {t} AS s WHERE {same})"
                " RETURNING {s} AS part) SELECT part, count(*) FROM gone GROUP BY 1").format(
            target=table.ident, p=in_target, t=temp, same=same_key, s=split
        ),
        params,
    ).fetchall()
    conn.execute("SELECT set_config('enable_nestloop', 'on', true)")
    return deleted


def _source(conn: psycopg.Connection, temp: sql.Identifier, table: Table) -> sql.Composable:
    """The temp table's rows, the last one per key when a key repeats."""
    keys = sql.SQL(", ").join(map(sql.Identifier, table.key))
    # Most batches hold each key once: a hash check is cheaper than always sorting for DISTINCT ON,
    # and feeding the upsert unsorted is faster too (measured: benchmarks/loader.py).
    duplicated = conn.execute(
        sql.SQL("SELECT 1 FROM {t} GROUP BY {keys} HAVING count(*) > 1 LIMIT 1").format(t=temp, keys=keys)
    ).fetchone()
    # One COPY into a fresh temp table stores rows in arrival order, so the highest ctid is the last row.
    return (sql.SQL("SELECT DISTINCT ON ({keys}) {cols} FROM {t} ORDER BY {keys}, ctid DESC") if duplicated
            else sql.SQL("SELECT {cols} FROM {t}")).format(
        keys=keys, cols=sql.SQL(", ").join(map(sql.Identifier, table.load_columns)), t=temp)


def _update_if_changed(table: Table, old: sql.Composable, new: sql.Composable
                       ) -> tuple[sql.Composable, sql.Composable] | None:
    """(SET clause, condition) updating a stored row (alias `old`) from an incoming one (`new`) only when a
    non-key column differs, so `loaded_at` moves only with the data; None when every column is key."""
    changing = [c for c in table.load_columns if c not in table.key]
    if not changing:
        return None

    def side(alias: sql.Composable) -> sql.Composable:
        return sql.SQL(", ").join(sql.SQL("{}.{}").format(alias, sql.Identifier(c)) for c in changing)
    assignments = sql.SQL(", ").join([*(sql.SQL("{c} = {n}.{c}").format(c=sql.Identifier(c), n=new) for c in changing),
                                      sql.SQL("{} = now()").format(sql.Identifier(LOADED_AT))])
    return assignments, sql.SQL("({}) IS DISTINCT FROM ({})").format(side(old), side(new))


# MERGE ... RETURNING merge_action(): PostgreSQL 17+. A join instead of ON CONFLICT's index probe per row
# (restated scope of 300k rows, all unchanged: 0.46 s against 1.30 s, benchmarks/loader.py). Used for a replace
# scope only: its sync lock keeps every other writer out of those keys, which MERGE (unlike ON CONFLICT) needs.
MERGE_RETURNING_SINCE = 170000


def _merge(conn: psycopg.Connection, temp: sql.Identifier, table: Table, split: sql.Composable,
           scope: Scope) -> list[tuple[Any, int, int]]:
    """Insert or update the temp table's rows into `scope` of the table; (split value, inserted, updated)."""
    cols = table.load_columns
    same_key = sql.SQL(" AND ").join(sql.SQL("t.{k} = s.{k}").format(k=sql.Identifier(k)) for k in table.key)
    inside, params = _scope_predicate("t", scope)  # the target side of the join: only the scope is read
    changed = _update_if_changed(table, sql.Identifier("t"), sql.Identifier("s"))
    matched = sql.SQL("")
    if changed:
        matched = sql.SQL(" WHEN MATCHED AND {d} THEN UPDATE SET {a}").format(d=changed[1], a=changed[0])
    part = sql.SQL("t.{}").format(split) if isinstance(split, sql.Identifier) else split
    statement = sql.SQL(
        "WITH written AS (MERGE INTO {target} AS t USING ({source}) AS s ON {same} AND {inside}{matched}"
        " WHEN NOT MATCHED THEN INSERT ({cols}, {loaded}) VALUES ({values}, now())"
        " RETURNING {part} AS part, merge_action() = 'INSERT' AS inserted)"
        " SELECT part, count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written GROUP BY 1"
    ).format(target=table.ident, source=_source(conn, temp, table), same=same_key, inside=inside, matched=matched,
             cols=sql.SQL(", ").join(map(sql.Identifier, cols)), loaded=sql.Identifier(LOADED_AT),
             values=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in cols), part=part)
    return conn.execute(statement, params).fetchall()


def _upsert(conn: psycopg.Connection, temp: sql.Identifier, table: Table,
            split: sql.Composable) -> list[tuple[Any, int, int]]:
    """Insert or update the temp table's rows; (split value, inserted, updated) per value of `split`."""
    cols = table.load_columns
    ident = sql.SQL(", ").join(map(sql.Identifier, cols))
    keys = sql.SQL(", ").join(map(sql.Identifier, table.key))
    changed = _update_if_changed(table, sql.Identifier(table.name), sql.SQL("EXCLUDED"))
    conflict = sql.SQL("DO UPDATE SET {a} WHERE {d}").format(a=changed[0], d=changed[1]) if changed \
        else sql.SQL("DO NOTHING")
    source = _source(conn, temp, table)
    statement = sql.SQL(
        "WITH src AS ({source}),"
        " written AS (INSERT INTO {target} AS {alias} ({cols}, {loaded}) SELECT {cols}, now() FROM src"
        " ON CONFLICT ({keys}) {conflict} RETURNING {s} AS part, (xmax = 0) AS inserted)"
        " SELECT part, count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written GROUP BY 1"
    ).format(
        source=source, keys=keys, cols=ident, target=table.ident, alias=sql.Identifier(table.name),
        loaded=sql.Identifier(LOADED_AT), conflict=conflict, s=split,
    )
    return conn.execute(statement).fetchall()


def ensure_table(conn: psycopg.Connection, table: Table) -> list[str]:
    """A table declared in config (not by a migration): created when absent; columns declared since are added.
    A stored primary key other than the declared one is an error (it changes what a row is). Returns the
    columns added."""
    conn.execute(table.create_sql())
    stored = {row[0] for row in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        (table.schema, table.name))}
    key = [row[0] for row in conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)",
        (table.qualified,))]
    if tuple(key) != table.key:
        raise LoadError(f"{table.qualified}: its stored key ({', '.join(key)}) differs from the declared one "
                        f"({', '.join(table.key)}); give the report a new name (a new table) or migrate the table")
    added = [c for c in table.columns if c not in stored]
    for column in added:
        conn.execute(sql.SQL("ALTER TABLE {t} ADD COLUMN {c} " + table.columns[column]).format(
            t=table.ident, c=sql.Identifier(column)))
    return added
