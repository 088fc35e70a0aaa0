"""The embedded server: concurrent starters, crashes, reuse. Each test uses its own ADPIPELINE_HOME."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from adpipeline.http.redact import redact
from adpipeline.warehouse.embedded import EmbeddedServer


SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")  # Postgres protocol: "may I use SSL?"


def postmasters(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(pgdata) in cmdline:
            found.append(proc)
    return found


def _start_after_barrier(home: str, barrier, results) -> None:
    barrier.wait()
    results.put(EmbeddedServer(Path(home)).ensure_started())


@pytest.fixture
def server(server_home):
    server = EmbeddedServer(server_home / "home")
    yield server
    server.stop()
    for proc in postmasters(server.pgdata):  # never leave a server behind, even if a test failed
        proc.kill()


def test_four_processes_starting_at_once_end_with_one_postmaster(server):
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_start_after_barrier, args=(str(server.home), barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    urls = {results.get(timeout=5) for _ in procs}
    assert len(urls) == 1
    assert len(postmasters(server.pgdata)) == 1
    with psycopg.connect(urls.pop()) as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert {"warehouse", "dagster"} <= names


def test_reuse_is_cheap_and_keeps_the_same_dsn(server):
    first = server.ensure_started()
    started = time.monotonic()
    assert server.ensure_started() == first
    assert time.monotonic() - started < 2
    assert first.startswith("postgresql://adpipeline:") and "@127.0.0.1:" in first and first.endswith("/warehouse")


def test_restart_works_after_kill_9_of_the_starter(server):
    # The starter is killed while it holds the start-up lock (most likely mid-start).
    code = f"from pathlib import Path; from adpipeline.warehouse.embedded import EmbeddedServer; EmbeddedServer(Path({str(server.home)!r})).ensure_started()"
    starter = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while not (server.root / "server.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    starter.send_signal(signal.SIGKILL)
    starter.wait()
    url = server.ensure_started()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert len(postmasters(server.pgdata)) == 1


def test_restart_works_after_kill_9_of_the_server_itself(server):
    url = server.ensure_started()
    (postmaster,) = postmasters(server.pgdata)
    postmaster.send_signal(signal.SIGKILL)
    postmaster.wait(10)
    assert (server.pgdata / "postmaster.pid").exists()  # stale pid file left behind
    assert server.ensure_started() == url  # same port reused when free
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("warehouse",)


def test_stop_stops_and_start_again_keeps_the_data(server):
    url = server.ensure_started()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    assert server.stop() is True
    assert postmasters(server.pgdata) == []
    assert server.stop() is False
    with psycopg.connect(server.ensure_started()) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (42,)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs a separate OS user for Postgres")
def test_as_root_the_server_runs_as_its_own_user(server):
    server.ensure_started()
    (postmaster,) = postmasters(server.pgdata)
    assert postmaster.username() == "embedded_postgres"
    # ...and its group, never root's: what `COPY ... TO PROGRAM` would run with
    assert postmaster.gids().real != 0 and postmaster.gids().effective != 0
    status = Path(f"/proc/{postmaster.pid}/status").read_text()
    (groups,) = [line for line in status.splitlines() if line.startswith("Groups:")]
    assert groups.split() == ["Groups:"]  # no supplementary groups either


def _connect_as_postgres(host: str, port: int, password: str | None = None) -> psycopg.Connection:
    # passfile: no ~/.pgpass may supply a password behind the test's back
    return psycopg.connect(host=host, port=port, user="postgres", dbname="warehouse", password=password,
                           passfile="/nonexistent", connect_timeout=10)


def test_a_client_without_the_password_is_refused_on_tcp_and_the_unix_socket(server, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    url = server.ensure_started()
    params = conninfo_to_dict(url)
    port = int(params["port"])
    assert len(params["password"]) >= 20
    password_file = server.root / "pipeline_password"
    assert password_file.read_text().strip() == params["password"]
    for secret_file in (password_file, server.root / "password"):  # the pipeline's and the superuser's
        assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    assert params["password"] not in redact(f"warehouse {url}")  # registered: masked in every log record
    for host in ("127.0.0.1", str(server.pgdata)):  # TCP and the unix socket
        for password in (None, "wrong-password"):
            with pytest.raises(psycopg.OperationalError, match="password"):
                _connect_as_postgres(host, port, password).close()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_data_directory_made_with_trust_auth_is_upgraded_on_the_next_start(server, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    url = server.ensure_started()
    port = int(conninfo_to_dict(url)["port"])
    # turn it into what an earlier version made: initdb --auth=trust, everything owned by the superuser
    with psycopg.connect(server.admin_dsn(port, "warehouse"), autocommit=True) as conn:
        conn.execute("ALTER DATABASE warehouse OWNER TO postgres")
        conn.execute("ALTER DATABASE dagster OWNER TO postgres")
        conn.execute("CREATE SCHEMA ops_old")
        conn.execute("CREATE TABLE ops_old.kept (id serial PRIMARY KEY, x int)")
        conn.execute("CREATE VIEW ops_old.kept_view AS SELECT x FROM ops_old.kept")
        conn.execute("INSERT INTO ops_old.kept (x) VALUES (7)")
        conn.execute("DROP OWNED BY adpipeline")
        conn.execute("DROP ROLE adpipeline")
        conn.execute("ALTER ROLE postgres PASSWORD NULL")
        (server.pgdata / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        conn.execute("SELECT pg_reload_conf()")
    (server.root / "password").unlink()
    (server.root / "pipeline_password").unlink()
    server.stop()
    upgraded = server.ensure_started()
    assert upgraded != url  # a new password
    with pytest.raises(psycopg.OperationalError, match="password"):
        _connect_as_postgres("127.0.0.1", port).close()
    with psycopg.connect(upgraded) as conn:  # the pipeline's role took the old objects over: it can change them
        assert conn.execute("SELECT x FROM ops_old.kept_view").fetchone() == (7,)
        conn.execute("INSERT INTO ops_old.kept (x) VALUES (8)")  # its sequence came along
        conn.execute("ALTER TABLE ops_old.kept ADD COLUMN y int")
        conn.execute("DROP VIEW ops_old.kept_view")


def test_the_pipelines_role_is_not_a_superuser_and_cannot_run_programs(server):
    url = server.ensure_started()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user").fetchone() == (
            False, True)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("COPY (SELECT 1) TO PROGRAM 'id'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER ROLE current_user SUPERUSER")
        conn.execute("CREATE DATABASE scratch_by_pipeline")  # the tests and dbt's docs may create databases
        conn.execute("DROP DATABASE scratch_by_pipeline WITH (FORCE)")


def test_restart_keeps_the_port_while_old_connections_are_in_time_wait(server):
    url = server.ensure_started()
    port = int(conninfo_to_dict(url)["port"])
    # A client that is closed by the server and only then closes its end (it reads EOF, writes nothing) leaves
    # the server's side of the connection in TIME_WAIT on the server's port. (psycopg's close writes a
    # Terminate message into the dead connection, which resets it instead.)
    held = socket.create_connection(("127.0.0.1", port))
    held.sendall(SSL_REQUEST)
    assert held.recv(1) == b"N"
    assert server.stop() is True
    assert held.recv(100) == b""
    held.close()
    time_wait = subprocess.run(["ss", "-Htan", "state", "time-wait", f"( sport = :{port} )"], capture_output=True,
                               text=True).stdout
    assert time_wait.strip(), "the test needs a socket in TIME_WAIT on the server's port"
    assert server.ensure_started() == url
    with psycopg.connect(url) as conn:  # a client that kept the old DSN reconnects
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_table_built_in_one_transaction_writes_its_rows_once_not_also_to_the_wal(server):
    # wal_level=minimal: what every dbt table model (CREATE TABLE AS, one transaction) gains; ~10 MB of rows,
    # above wal_skip_threshold (2 MB), below which Postgres logs the new table at commit anyway
    with psycopg.connect(server.ensure_started(), autocommit=True) as conn:
        assert conn.execute("SHOW wal_level").fetchone()[0] == "minimal"
        before = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
        with conn.transaction():
            conn.execute("CREATE TABLE built AS SELECT g AS id, md5(g::text) AS payload "
                         "FROM generate_series(1, 200000) AS g")
        size, wal = conn.execute("SELECT pg_total_relation_size('built'), "
                                 "pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (before,)).fetchone()
    assert size > 10_000_000
    assert wal < size / 10, f"{wal} bytes of WAL for a {size}-byte table"


def test_a_new_home_takes_the_default_port_so_dbt_keeps_its_parse_state(server, monkeypatch):
    """dbt's saved parse state is only reused for the same host and port: fresh homes share one port."""
    from adpipeline.warehouse import embedded

    with socket.socket() as s:  # a port known to be free now stands in for DEFAULT_PORT
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    monkeypatch.setattr(embedded, "DEFAULT_PORT", free)
    assert conninfo_to_dict(server.ensure_started())["port"] == str(free)


def test_a_new_home_whose_default_port_is_taken_at_start_gets_another(server, monkeypatch):
    """Taken before the check, or between the check and Postgres' own bind: the server starts elsewhere."""
    from adpipeline.warehouse import embedded

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setattr(embedded, "DEFAULT_PORT", taken)
        monkeypatch.setattr(EmbeddedServer, "_preferred_port", lambda self: taken)  # the check saw it free
        url = server.ensure_started()
    assert conninfo_to_dict(url)["port"] != str(taken)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
