"""How dbt reaches the warehouse: connection fields derived from the warehouse DSN at run time.

`dbt_project/profiles.yml` reads host, port, user, database and sslmode from ADPIPELINE_DBT_* variables
and the password from DBT_ENV_SECRET_ADPIPELINE_PASSWORD (dbt scrubs DBT_ENV_SECRET_* values from its
logs). Nothing is written to disk; the variables are set only around the start of a dbt invocation.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from importlib.metadata import version as installed_version
from typing import Any

from dagster_dbt import DbtCliResource
from packaging import version
from psycopg.conninfo import conninfo_to_dict

from adpipeline.transform.project import dbt_executable, dbt_project

PASSWORD_VAR = "DBT_ENV_SECRET_ADPIPELINE_PASSWORD"
FIELD_VARS = {
    "host": "ADPIPELINE_DBT_HOST",
    "port": "ADPIPELINE_DBT_PORT",
    "user": "ADPIPELINE_DBT_USER",
    "dbname": "ADPIPELINE_DBT_DBNAME",
    "sslmode": "ADPIPELINE_DBT_SSLMODE",
}
DEFAULTS = {"host": "", "port": "5432", "sslmode": "prefer"}


def dbt_environment(dsn: str) -> dict[str, str]:
    """The profile's variables for a Postgres DSN (URL or key=value form).

    A missing host means libpq's default (the local unix socket): an empty host tells psycopg2 the same.
    """
    try:
        params = conninfo_to_dict(dsn)
    except Exception as exc:  # psycopg.ProgrammingError; the DSN itself is never echoed (it may hold a password)
        raise ValueError(f"the warehouse DSN is not a valid Postgres connection string ({type(exc).__name__})") from None
    fields = {**DEFAULTS, **{k: str(v) for k, v in params.items() if v is not None}}
    fields.setdefault("user", getpass.getuser())
    fields.setdefault("dbname", fields["user"])
    env = {var: fields[name] for name, var in FIELD_VARS.items()}
    env[PASSWORD_VAR] = fields.get("password", "")
    return env


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore the previous values."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class AdpipelineDbtCliResource(DbtCliResource):
    """dagster-dbt's resource, without two costs per step that buy us nothing:

    * its `dbt --version` subprocess (~3-4 s here, and dbt asks PyPI for the latest version): the venv's own
      dbt is the installed dbt-core;
    * its in-process dbt adapter, built before every invocation (dbt's project, profile and adapter loaded in
      the step, ~3 s here): dagster-dbt uses it only for `fetch_row_counts` / `fetch_column_metadata`, and our
      row counts go through the warehouse resource (invocation.with_row_counts).
    """

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None  # dagster-dbt's DbtCliInvocation takes None (as for the Fusion engine)

    @cached_property
    def _cli_version(self) -> version.Version:
        if self.dbt_executable == dbt_executable() and os.path.isabs(self.dbt_executable):
            return version.parse(installed_version("dbt-core"))
        return super()._cli_version


def dbt_resource() -> DbtCliResource:
    return AdpipelineDbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable(),
                                    global_config_flags=["--no-use-colors"])
