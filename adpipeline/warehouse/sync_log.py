"""`ops.etl_sync_log`: one row per sync attempt, committed atomically with the data it describes.

A sync of one (source, scope, entity, window):
  1. takes a session advisory lock on that key (a second concurrent attempt is refused);
  2. fails every `running` row of the same (source, scope, entity) whose lock nobody holds — the
     process that wrote it is gone (killed run, lost worker), so that row can never finish;
  3. commits its own `running` row;
  4. loads the data and marks its row `success` in ONE transaction — or `partial` when the body said that
     part of the scope's children failed (`Sync.partial`: the data commits, the row names what is missing);
     on any error the data rolls back and the row is marked `failed` with the (redacted) error;
  5. just before that commit asks its fence (if given: is the Dagster run still the owner?) and rolls
     back instead when the run was failed or cancelled meanwhile — a step orphaned by run monitoring or a
     killed worker must not keep committing while the retry reloads the same scopes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg

from adpipeline import clock
from adpipeline.warehouse.db import connect
from adpipeline.warehouse.loader import LoadResult, Table, load

log = logging.getLogger(__name__)

SYNC_TYPES = ("full", "incremental", "restatement")


class SyncInProgress(RuntimeError):
    """Another live process is syncing the same (source, scope, entity, window)."""


class RunNoLongerOwner(RuntimeError):
    """The run this sync belongs to was failed or cancelled while it loaded: its data is not committed."""


def _lock_key(source: str, scope: str, entity: str, window_start, window_end) -> str:
    return f"sync|{source}|{scope}|{entity}|{window_start}|{window_end}"


def _try_lock(conn: psycopg.Connection, keys: list[str]) -> list[str]:
    """Try the keys' advisory locks in one round trip; the keys it got (all of them, or the sync must not run)."""
    got = conn.execute("SELECT k, pg_try_advisory_lock(hashtextextended(k, 0))"
                       " FROM unnest(%s::text[]) WITH ORDINALITY AS t(k, i) ORDER BY i", (keys,)).fetchall()
    return [key for key, ok in got if ok]


def _unlock(conn: psycopg.Connection, keys: list[str]) -> None:
    conn.execute("SELECT pg_advisory_unlock(hashtextextended(k, 0)) FROM unnest(%s::text[]) AS k", (keys,))


@dataclass
class Sync:
    """Handle given to the body of a sync: load through it, report API calls on it."""

    conn: psycopg.Connection
    id: int
    source: str
    scope: str
    entity: str
    result: LoadResult = field(default_factory=LoadResult)
    api_calls: int = 0
    partial: str | None = None  # set by the body: what of this scope failed although the rest commits
    split_by: str | None = None  # a sync of several days (`sync_days`): the column naming each row's day

    def load(self, table: Table, rows, *, replace_scope: dict[str, Any] | None = None, count: bool = True) -> LoadResult:
        """Load in this sync's transaction; `count=False` for side tables the sync-log counts should not include."""
        loaded = load(self.conn, table, rows, replace_scope=replace_scope, split_by=self.split_by if count else None)
        if count:
            self.result += loaded
            for value, part in loaded.parts.items():
                merged = self.result.parts.setdefault(value, LoadResult())
                merged += part
        return loaded


def fail_abandoned(conn: psycopg.Connection, source: str, scope: str, entity: str) -> int:
    """Fail `running` rows of (source, scope, entity) whose writer is gone; returns how many."""
    rows = conn.execute(
        "SELECT id, window_start, window_end, dagster_run_id FROM ops.etl_sync_log"
        " WHERE source = %s AND scope = %s AND entity = %s AND status = 'running'",
        (source, scope, entity),
    ).fetchall()
    failed = 0
    for row_id, start, end, run_id in rows:
        key = _lock_key(source, scope, entity, start, end)
        if not _try_lock(conn, [key]):
            continue  # its writer still holds the lock: a live sync
        try:
            conn.execute(
                "UPDATE ops.etl_sync_log SET status = 'failed', finished_at = %s, error = %s"
                " WHERE id = %s AND status = 'running'",
                (clock.now(), f"abandoned: the process running this sync (run {run_id or 'unknown'}) ended without finishing it",
                 row_id),
            )
            failed += 1
        finally:
            _unlock(conn, [key])
    conn.commit()
    if failed:
        log.warning("%s %s %s: marked %d abandoned 'running' sync(s) as failed", source, scope, entity, failed)
    return failed


@contextmanager
def sync(
    *,
    source: str,
    scope: str,
    entity: str,
    sync_type: str,
    window: tuple[date, date] | None = None,
    run_id: str | None = None,
    url: str | None = None,
    api_calls: Callable[[], int] | None = None,
    fence: Callable[[], str | None] | None = None,
) -> Iterator[Sync]:
    """Run one sync attempt; see the module docstring for the guarantees."""
    with _attempt(source, scope, entity, {window or (None, None): sync_type}, run_id, url, api_calls, fence,
                  None) as handle:
        yield handle


@contextmanager
def sync_days(
    *,
    source: str,
    scope: str,
    entity: str,
    days: Mapping[date, str],
    day_column: str = "date",
    run_id: str | None = None,
    url: str | None = None,
    api_calls: Callable[[], int] | None = None,
    fence: Callable[[], str | None] | None = None,
) -> Iterator[Sync]:
    """One attempt at several days of a scope (day -> sync type) in ONE data transaction, each day with its own
    sync-log row, lock and counts (by `day_column` of the loaded rows), as if each were its own sync: all
    commit together or all fail together. The window's API calls are recorded on its first day's row."""
    windows = {(day, day): days[day] for day in sorted(days)}
    with _attempt(source, scope, entity, windows, run_id, url, api_calls, fence, day_column) as handle:
        yield handle


@contextmanager
def _attempt(source: str, scope: str, entity: str, windows: Mapping[tuple, str], run_id: str | None,
             url: str | None, api_calls: Callable[[], int] | None, fence: Callable[[], str | None] | None,
             split_by: str | None) -> Iterator[Sync]:
    for sync_type in windows.values():
        if sync_type not in SYNC_TYPES:
            raise ValueError(f"sync_type must be one of {SYNC_TYPES}, got {sync_type!r}")
    keys = [_lock_key(source, scope, entity, start, end) for start, end in windows]
    locked: list[str] = []
    conn = connect(url)
    try:
        # the days' locks in one round trip (a window has up to a week of days; every statement below is
        # one round trip per window, not per day)
        locked = _try_lock(conn, keys)
        if len(locked) < len(keys):
            raise SyncInProgress(
                f"{source} {scope} {entity}: another sync of this scope and window is running; not starting a second"
            )
        fail_abandoned(conn, source, scope, entity)
        # one clock reading per transaction, not per day: the days start and end together, and a followed clock
        # (the sandbox's) is an HTTP call each time: sampling found them the insights step's largest cost
        started = clock.now()
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ops.etl_sync_log (source, scope, entity, sync_type, status, window_start, window_end,"
                " dagster_run_id, started_at) VALUES (%s, %s, %s, %s, 'running', %s, %s, %s, %s) RETURNING id",
                [(source, scope, entity, sync_type, start, end, run_id, started)
                 for (start, end), sync_type in windows.items()], returning=True)
            ids = [cur.fetchone()[0]]
            while cur.nextset():
                ids.append(cur.fetchone()[0])
        conn.commit()
        handle = Sync(conn=conn, id=ids[0], source=source, scope=scope, entity=entity, split_by=split_by)
        try:
            yield handle
            refused = fence() if fence else None
            if refused:
                raise RunNoLongerOwner(f"{source} {scope} {entity}: not committed, {refused}")
            calls = api_calls() if api_calls else handle.api_calls
            finished = clock.now()
            done = []
            for i, (row_id, (start, _)) in enumerate(zip(ids, windows)):
                r = handle.result.parts.get(start, LoadResult()) if split_by else handle.result
                done.append(("partial" if handle.partial else "success", finished, r.processed, r.inserted,
                             r.updated, r.deleted, calls if i == 0 else 0,
                             handle.partial and _redacted(handle.partial), row_id))
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE ops.etl_sync_log SET status = %s, finished_at = %s, records_processed = %s,"
                    " records_inserted = %s, records_updated = %s, records_deleted = %s, api_calls = %s, error = %s"
                    " WHERE id = %s", done)
            conn.commit()
        except BaseException as exc:
            conn.rollback()
            calls = api_calls() if api_calls else handle.api_calls
            finished = clock.now()
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE ops.etl_sync_log SET status = 'failed', finished_at = %s, api_calls = %s, error = %s"
                    " WHERE id = %s", [(finished, calls if i == 0 else 0, _describe(exc), row_id)
                                       for i, row_id in enumerate(ids)])
            conn.commit()
            raise
    finally:
        if not conn.closed:
            conn.rollback()
            if locked:
                _unlock(conn, locked)
            conn.commit()
            conn.close()


def _describe(exc: BaseException) -> str:
    return _redacted(f"{type(exc).__name__}: {exc}")


def _redacted(text: str) -> str:
    from adpipeline.http.redact import redact

    return redact(text)[:2000]
