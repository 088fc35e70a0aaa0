"""Shared fixtures: the test session owns one embedded Postgres server and one sandbox process (real ones, no mocks).

Time: the `sandbox` fixture's clock is the one clock of the tests. It is frozen on a fixed day (the sandbox's
default start) whatever the date is, tests move it with `sandbox.admin.set_clock/advance`, and while a test
holds the fixture the pipeline reads it through ADPIPELINE_CLOCK_URL (adpipeline/clock.py). Tests without a
sandbox pass their fixed `now` to what they test. Nothing depends on today's date.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from adpipeline.clock import CLOCK_URL_ENV
from adpipeline.sandbox.process import SandboxProcess
from adpipeline.transform.project import ensure_manifest
from adpipeline.warehouse import db
from adpipeline.warehouse.embedded import EmbeddedServer


def pytest_configure(config) -> None:
    # The dbt manifest must exist before any test loads the definitions (a no-op when it is fresh). Under
    # pytest-xdist the controller builds it before it starts the workers, which must not parse it at once.
    if not hasattr(config, "workerinput"):
        ensure_manifest()


@pytest.fixture(scope="session")
def warehouse_home() -> Iterator[Path]:
    # Not under pytest's tmp_path: pytest prunes old basetemp folders, which a concurrent pytest
    # session (another checkout, a helper) could do under a live server.
    home = Path(tempfile.mkdtemp(prefix="adpipeline-test-home-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def server_home() -> Iterator[Path]:
    """A folder for a test's own Postgres server. Not under pytest's basetemp: the server runs as another
    OS user and needs o+x on the parents, which a concurrent pytest session resets to 0700."""
    home = Path(tempfile.mkdtemp(prefix="adpipeline-test-server-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def warehouse_url(warehouse_home: Path) -> Iterator[str]:
    """The session's warehouse: ADPIPELINE_TEST_WAREHOUSE_URL if given, else a fresh embedded server."""
    external = os.environ.get("ADPIPELINE_TEST_WAREHOUSE_URL")
    server = None if external else EmbeddedServer(warehouse_home)
    url = external or server.ensure_started()
    saved = {k: os.environ.get(k) for k in ("ADPIPELINE_WAREHOUSE_URL", "ADPIPELINE_HOME")}
    os.environ["ADPIPELINE_WAREHOUSE_URL"] = url
    os.environ["ADPIPELINE_HOME"] = str(warehouse_home)
    db.migrate(url)
    yield url
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if server:
        server.stop()


@pytest.fixture
def conn(warehouse_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(warehouse_url) as connection:
        yield connection


@pytest.fixture
def fresh_warehouse(warehouse_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, migrated warehouse database of this test's own (on the session's server), for what judges
    every row of a table; the pipeline's resources point at it while the test runs."""
    name = f"fresh_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(warehouse_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = warehouse_url.rsplit("/", 1)[0] + f"/{name}"
    db.migrate(url)
    monkeypatch.setenv("ADPIPELINE_WAREHOUSE_URL", url)
    yield url
    with psycopg.connect(warehouse_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def scratch_schema(conn: psycopg.Connection) -> Iterator[str]:
    """A schema of its own for one test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE SCHEMA {name}")
    conn.commit()
    yield name
    conn.rollback()
    conn.execute(f"DROP SCHEMA {name} CASCADE")
    conn.commit()


@pytest.fixture(scope="session")
def sandbox_process() -> Iterator[SandboxProcess]:
    """One sandbox subprocess for the whole session (seed 42, scale 1.0, default clock)."""
    with SandboxProcess() as process:
        yield process


@pytest.fixture
def sandbox(sandbox_process: SandboxProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxProcess]:
    """The session sandbox, reset (faults, counters, clock, emulation state) before and after each test; the
    pipeline's clock follows the sandbox's for the test."""
    if not sandbox_process.running:
        pytest.fail("the sandbox process died:\n" + sandbox_process.log_tail())
    sandbox_process.admin.reset()
    monkeypatch.setenv(CLOCK_URL_ENV, sandbox_process.admin.clock_url)
    yield sandbox_process
    if sandbox_process.running:
        sandbox_process.admin.reset()
