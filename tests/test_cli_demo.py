"""`adpipeline demo` end to end: a fresh home, the sandbox, the embedded warehouse, every asset once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg

PROJECT = Path(__file__).resolve().parent.parent


def test_demo_runs_everything_and_lands_rows(server_home):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADPIPELINE_", "DAGSTER_", "META_", "GA4_",
                                                                     "BREEZEWAY_"))}
    env["ADPIPELINE_HOME"] = str(server_home / "home")
    demo = subprocess.run([sys.executable, "-m", "adpipeline.cli", "demo", "--keep-warehouse"], env=env, cwd=PROJECT,
                          capture_output=True, text=True, timeout=1200)
    output = demo.stdout + demo.stderr
    try:
        assert demo.returncode == 0, output[-6000:]
        assert "demo OK" in demo.stdout
        summary = demo.stdout
        for asset in ("meta/ads_insights", "breezeway/reservations", "ga4/traffic_acquisition"):
            assert re.search(rf"^{re.escape(asset)}\s", summary, re.M), summary
        url = re.search(r"^warehouse: (\S+)", summary, re.M).group(1)
        with psycopg.connect(url) as conn:
            for table in ("raw_meta.ads_insights", "raw_breezeway.reservations", "raw_ga4.traffic_acquisition"):
                assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0, table
            failed = conn.execute("SELECT count(*) FROM ops.etl_sync_log WHERE status <> 'success'").fetchone()[0]
            assert failed == 0
        # the secrets the sandbox hands out never reach the output
        assert "client_secret" not in output
    finally:
        subprocess.run([sys.executable, "-m", "adpipeline.cli", "warehouse", "stop"], env=env, cwd=PROJECT,
                       capture_output=True, timeout=120)
