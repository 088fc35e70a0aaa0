"""Local start-up shared by `adpipeline demo` and `adpipeline dev`.

Starts (or reuses) the embedded warehouse unless ADPIPELINE_WAREHOUSE_URL points elsewhere, migrates
it, prepares DAGSTER_HOME on Postgres storage, starts the sandbox APIs in their own process and points
the sources at them; exports all of it to child processes through the environment. On exit it stops
exactly what it started.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from adpipeline.clock import CLOCK_URL_ENV
from adpipeline.warehouse import db
from adpipeline.warehouse.embedded import WAREHOUSE_URL_ENV, default_server, export_environment

log = logging.getLogger(__name__)
PROJECT_DIR = Path(__file__).resolve().parent.parent


def storage_config(postgres_url: object) -> dict:
    """dagster.yaml's `storage` block: Dagster's Postgres storage holding its connections in every process
    (warehouse/dagster_storage.py; `postgres_url` as Dagster's config takes it). Named, not imported: importing
    it loads dagster_postgres (~0.75 s), and the health commands import this module for prepare_dagster_home."""
    return {"custom": {"module": "adpipeline.warehouse.dagster_storage", "class": "HeldConnectionsPostgresStorage",
                       "config": {"postgres_url": postgres_url}}}


STORAGE = {"storage": storage_config({"env": "ADPIPELINE_DAGSTER_PG_URL"})}


@dataclass
class Stack:
    warehouse_url: str
    dagster_home: Path
    sandbox_url: str | None
    started_warehouse: bool


def prepare_dagster_home(dagster_home: Path) -> None:
    """$DAGSTER_HOME/dagster.yaml = the project's instance settings + Postgres storage."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    settings = yaml.safe_load((PROJECT_DIR / "dagster.yaml").read_text()) or {}
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump({**settings, **STORAGE}, sort_keys=False))


def limit_pools() -> None:
    """dbt runs one at a time (its runs share the warehouse and rebuild overlapping windows)."""
    import dagster as dg

    from adpipeline.transform.assets import POOL as DBT_POOL

    with dg.DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots(DBT_POOL, 1)  # idempotent


def start_warehouse() -> tuple[str, bool]:
    """(DSN, whether this call started the embedded server)."""
    url = os.environ.get(WAREHOUSE_URL_ENV)
    if url:
        return url, False
    server = default_server()
    was_running = server.running_port() is not None
    return server.ensure_started(), not was_running


@contextmanager
def local_stack(*, sandbox: bool = True, keep_warehouse: bool = False) -> Iterator[Stack]:
    with ExitStack() as cleanup:
        url, started = start_warehouse()
        if started and not keep_warehouse:
            cleanup.callback(default_server().stop)
        env = export_environment(url)
        applied = db.migrate(url)
        if applied:
            log.info("migrations applied: %s", ", ".join(applied))
        dagster_home = Path(env["DAGSTER_HOME"])
        prepare_dagster_home(dagster_home)
        limit_pools()
        # here, not at import: the health commands import this module for prepare_dagster_home alone
        from adpipeline.config import get_config
        from adpipeline.transform.invocation import prepare_manifest

        prepare_manifest(url, get_config())  # on a fresh clone also the first dbt run's parse state
        sandbox_url = None
        if sandbox:
            from adpipeline.sandbox.process import SandboxProcess

            # The sandbox clock follows real time, so "today" means the same to the pipeline and the APIs.
            process = cleanup.enter_context(SandboxProcess(clock="now", extra_args=["--clock-running"]))
            sandbox_url = process.base_url
            point_sources_at_sandbox(sandbox_url)
        yield Stack(url, dagster_home, sandbox_url, started)


def point_sources_at_sandbox(base_url: str) -> dict[str, str]:
    """API base URLs, the sandbox's demo credentials (not secrets: the sandbox accepts only these) and the
    pipeline's clock (the sandbox's: its data is built around its "today").

    Values already in the environment win, so a user can aim one source at the real API; the clock is
    always this sandbox's, which runs with real time here."""
    from adpipeline.config import get_config
    from adpipeline.sandbox import breezeway
    from adpipeline.sandbox.environment import demo_environment

    offered = {**demo_environment(base_url), **breezeway.demo_environment(base_url, get_config().breezeway.regions)}
    env = {k: v for k, v in offered.items() if k == CLOCK_URL_ENV or not os.environ.get(k)}
    os.environ.update(env)
    return env
