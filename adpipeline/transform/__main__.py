"""Run dbt by hand against the warehouse, with the same connection Dagster gives it.

    uv run --frozen python -m adpipeline.transform build --select marts
    uv run --frozen python -m adpipeline.transform build --select tag:meta_daily --vars '{start_date: 2026-03-01, end_date: 2026-03-08}'

The warehouse is ADPIPELINE_WAREHOUSE_URL, else the embedded server (started if needed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from adpipeline.transform.project import DBT_PROJECT_DIR
from adpipeline.transform.resources import dbt_environment
from adpipeline.warehouse.resource import WarehouseResource


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    dbt = shutil.which("dbt") or str(Path(sys.executable).with_name("dbt"))
    env = {**os.environ, **dbt_environment(WarehouseResource().dsn())}
    location = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    return subprocess.call([dbt, *args, *(location if args[0] not in ("--help", "-h", "--version") else [])], env=env)


if __name__ == "__main__":
    sys.exit(main())
