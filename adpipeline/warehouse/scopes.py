"""One per-scope sync runner for every source, with ONE policy for a run in which some scopes fail.

- Every scope (an ad account, an account-day, a region, a property-day) is its own sync: its rows and its
  sync-log row commit together (see `sync_log`). A failing scope is listed and the others carry on; an error
  that would repeat in every scope (the caller's `fatal`, e.g. a rejected token) stops the step at once.
- The sync-log rows stay per scope: `success`, `failed`, or `partial` (the scope committed, but some of its
  children failed: the body sets `Sync.partial`). No extra rows.
- `finish` records the materializations of what committed; when any scope failed or is partial it then FAILS
  the step with one message naming those scopes and the action, so the run is red and run-failure alerts
  fire, while the marts sensor still rebuilds what the run materialized.
- One metadata shape for every source: scopes_loaded, failed_scopes, partial_scopes, errors, load counts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

import dagster as dg

from adpipeline.http import ApiError, redact
from adpipeline.warehouse.loader import LoadResult
from adpipeline.warehouse.resource import WarehouseResource
from adpipeline.warehouse.sync_log import Sync, SyncInProgress

MAX_NAMED = 10  # failed scopes named in the failure message; every one is in the metadata


def describe(error: BaseException) -> str:
    return redact(str(error) if isinstance(error, ApiError) else f"{type(error).__name__}: {error}")


class NotAttempted(Exception):
    """A scope the run did not try, because what failed an earlier scope would fail it too."""

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.retryable = retryable


def _retryable(error: BaseException) -> bool:
    return isinstance(error, SyncInProgress) or isinstance(error, (ApiError, NotAttempted)) and error.retryable


class ScopeRunner:
    """Runs the scopes of one step (source, entity) and applies the policy above."""

    def __init__(self, context: dg.AssetExecutionContext, warehouse: WarehouseResource, *, source: str, entity: str, action: str,
                 fatal: Callable[[BaseException], bool] = lambda error: False) -> None:
        self.context, self.warehouse, self.source, self.entity = context, warehouse, source, entity
        self.action, self.fatal = action, fatal
        self.loaded = LoadResult()
        self.succeeded: list[str] = []  # committed, partial ones included
        self.failed: dict[str, str] = {}
        self.partial: dict[str, str] = {}
        self.retryable = True  # every failure so far was transient: a step retry may fix it
        self.errors: dict[str, BaseException] = {}  # the exception each failed scope ended with
        self._lock = threading.Lock()

    def run(self, label: str, body: Callable[[Sync], None], *, scope: str, sync_type: str = "incremental",
            window: tuple[date, date] | None = None, api_calls: Callable[[], int] | None = None,
            days: Mapping[date, str] | None = None) -> Sync | None:
        """`body` in the sync of (source, scope, entity, window); the committed Sync, or None if it failed.

        With `days` (day -> sync type): one attempt at those days of `scope` in ONE transaction, each day its
        own sync-log row and its own label `"{scope} {day}"`, committed or failed together. Thread-safe: the
        scopes of one step may run in parallel."""
        labels = [f"{scope} {day}" for day in sorted(days)] if days else [label]
        common = {"source": self.source, "scope": scope, "entity": self.entity, "run_id": self.context.run.run_id,
                  "api_calls": api_calls}
        attempt = (self.warehouse.sync_days(days=days, **common) if days
                   else self.warehouse.sync(sync_type=sync_type, window=window, **common))
        try:
            with attempt as sync:
                body(sync)
        except Exception as error:
            if self.fatal(error):
                raise
            with self._lock:
                for one in labels:
                    self.errors[one] = error
                    self.fail(one, describe(error), retryable=_retryable(error))
            return None
        with self._lock:
            self.loaded += sync.result
            self.succeeded.extend(labels)
            if sync.partial:
                self.partial[label] = redact(sync.partial)
                self.retryable = False  # its healthy part is committed; what failed needs the action, not a retry
                self.context.log.error(f"{self.source} {self.entity} {label}: {self.partial[label]}")
        return sync

    def fail(self, label: str, message: str, *, retryable: bool = False) -> None:
        self.failed[label] = message
        self.retryable &= retryable
        self.context.log.error(f"{self.source} {self.entity} {label}: {message}")

    def skip(self, reason: BaseException, *, scope: str, days: Mapping[date, str]) -> None:
        """Days of `scope` not attempted because of `reason` (an earlier scope's error that would repeat): each
        gets its `failed` sync-log row saying so, and its label fails like any failed scope's."""
        def body(sync: Sync) -> None:
            raise NotAttempted(f"not attempted: {scope} failed earlier in this run ({describe(reason)[:300]})",
                               retryable=_retryable(reason))

        self.run(scope, body, scope=scope, days=days)

    def metadata(self, result: LoadResult | None = None) -> dict[str, Any]:
        problems = {**self.failed, **self.partial}
        return {
            **(result or self.loaded).as_metadata(),
            "scopes_loaded": len(self.succeeded),
            "failed_scopes": dg.MetadataValue.json(sorted(self.failed)),
            "partial_scopes": dg.MetadataValue.json(sorted(self.partial)),
            "errors": dg.MetadataValue.json({k: v[:1000] for k, v in sorted(problems.items())}),
        }

    def finish(self, results: Sequence[dg.MaterializeResult], partitions: Sequence[str | None] = (None,),
               ) -> list[dg.MaterializeResult]:
        """The results to return when every scope loaded; otherwise records them as materializations of
        `partitions` (what committed) and fails the step naming the failed scopes and the action."""
        if not self.failed and not self.partial:
            return list(results)
        if self.succeeded:
            for result in results:
                key = result.asset_key or self.context.asset_key
                for partition in partitions:
                    self.context.log_event(dg.AssetMaterialization(asset_key=key, partition=partition,
                                                                   metadata=dict(result.metadata or {})))
        problems = {**self.failed, **{k: f"partial: {v}" for k, v in self.partial.items()}}
        named = "; ".join(f"{label}: {message[:500]}" for label, message in sorted(problems.items())[:MAX_NAMED])
        more = f"; and {len(problems) - MAX_NAMED} more (see failed_scopes)" if len(problems) > MAX_NAMED else ""
        total = len(self.succeeded) + len(self.failed)
        kept = f"{len(self.succeeded)} committed and recorded" if self.succeeded else "nothing loaded"
        partial = f", {len(self.partial)} of them partial" if self.partial else ""
        raise dg.Failure(
            description=(f"{self.source}/{self.entity}: {len(problems)} of {total} scope(s) failed{partial} "
                         f"({kept}): {named}{more}. Action: {self.action}"),
            metadata=self.metadata(), allow_retries=self.retryable)
