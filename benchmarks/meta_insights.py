"""Meta insights end to end on several account shapes: the sandbox (its own process) -> meta/ads_insights
-> the warehouse, beside the ceilings measured on the same rows in the same run.

    uv run --frozen python benchmarks/meta_insights.py [--shape many-small|few-large|latency ...]
                                                       [--days N] [--latency SECONDS] [--scale S]

Shapes (each prints its own table):
  many-small  10 ad accounts (scripted sandbox accounts, scale 4.3: ~62 rows per account-day) x N days
              (default 300: 186,277 rows measured, 3,000 account-days): the common real case, small
              account-days; the issue's 200 ads per account (600,000 rows over 300 days) needs about --scale 14
  few-large   the 3 configured accounts at scale 300 (~20,000 rows per day) x N days (default 10)
  latency     many-small over N days (default 100: over fewer, the fixed code-location load dominates the
              end-to-end ratio) with every Graph call delayed by --latency (200 ms)
Phases, each in a fresh subprocess so its peak RSS is its own, in rounds so each ratio compares figures taken
at about the same load (each phase prints the load average at its start and end): serve, pipeline, raw COPY
(then sequential and dlt); with --baseline DIR a second round runs the pipeline with DIR's code (e.g. main);
a last serve closes the run:
  serve       the sandbox's serve rate: fetch + parse the same calls as the pipeline (one window of up to
              window_days per account), one after another, nothing stored
  sequential  (latency shape) a sequential client: one account-day after another (two calls each, as the
              pipeline fetched before issue 23)
  pipeline    as a user runs it: `dagster asset materialize --select meta/ads_insights,meta/account_insights
              --partition-range A...B` (code-location load included; Dagster storage on the same Postgres)
  raw COPY    raw COPY of the same rows (read back untimed, in chunks) into an empty table of the same shape:
              the database's ceiling for this client
  dlt         dlt's rest_api source into the same Postgres (merge on ad_id + date_start), when a venv with
              dlt exists (--dlt-python, default /tmp/dlt23-venv/bin/python; dlt is not a project dependency)
Targets (issue 23): many-small >= 50 % of min(serve, COPY) and >= 3x dlt; latency >= 5x the sequential
client; peak RSS <= 300 MB at 1M rows (`--shape many-small --scale 24`: about 1M rows over 300 days).
Uses ADPIPELINE_WAREHOUSE_URL or a throwaway embedded warehouse.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from scratch import scratch_dir

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

CONFIGURED = ("act_100000000000001", "act_100000000000002", "act_100000000000003")
LAST_DAY = date(2026, 11, 22)  # the sandbox clock starts on 2026-11-23: every earlier day is complete
COPY_SCHEMA = "bench_meta"
DLT_SCHEMA = "bench_dlt"
DLT_PYTHON = "/tmp/dlt23-venv/bin/python"


@dataclass(frozen=True)
class Shape:
    name: str
    extra_accounts: int  # scripted sandbox accounts (0: the configured ones)
    scale: float
    days: int
    latency: float = 0.0

    @property
    def accounts(self) -> list[str]:
        if not self.extra_accounts:
            return list(CONFIGURED)
        return [f"act_1000000000000{11 + i:02d}" for i in range(self.extra_accounts)]


SHAPES = {
    "many-small": Shape("many-small", 10, 4.3, 300),
    "few-large": Shape("few-large", 0, 300.0, 10),
    "latency": Shape("latency", 10, 4.3, 100, latency=0.2),
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def day_range(days: int) -> list[date]:
    return [LAST_DAY - timedelta(days=i) for i in range(days)][::-1]


# ---- phases (run in subprocesses) --------------------------------------------------------------------


def fetch_like_pipeline(client, accounts: list[str], days: list[date], per_day: bool = False) -> int:
    """The calls the pipeline makes (each account's window of up to `window_days` days: its account totals,
    then its ad rows), parsed as it parses them, one after another; `per_day`: one window per day, as the
    pipeline fetched before issue 23. Returns the ad rows."""
    from adpipeline.sources.meta.assets import day_windows
    from adpipeline.sources.meta.client import ACCOUNT_TOTALS_FIELDS, account_insights_record, insights_record
    from adpipeline.sources.meta.resources import MetaResource

    rows = 0
    for account in accounts:
        for window in day_windows(days, 1 if per_day else MetaResource().window_days):
            first, last = window[0], window[-1]
            for total in client.insights(account, first, last, level="account", fields=ACCOUNT_TOTALS_FIELDS):
                account_insights_record(total, account)
            for row in client.insights(account, first, last):
                insights_record(row, account)
                rows += 1
    return rows


def phase_serve(graph_url: str, accounts: list[str], days: list[date], sequential: bool) -> dict:
    from adpipeline.sandbox.meta import DEMO_ACCESS_TOKEN
    from adpipeline.sources.meta.client import MetaClient

    started, cpu = time.perf_counter(), time.process_time()
    with MetaClient(graph_url, DEMO_ACCESS_TOKEN) as client:
        rows = fetch_like_pipeline(client, accounts, days, per_day=sequential)
        calls = client.calls
    return {"rows": rows, "seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu,
            "api_calls": calls}


def phase_pipeline(graph_url: str, clock_url: str, config: str, days: list[date], code: Path = PROJECT) -> dict:
    """`dagster asset materialize` over the range, as a user runs it, with the code of the checkout `code`."""
    import psycopg

    from adpipeline.sandbox.meta import DEMO_ACCESS_TOKEN
    from adpipeline.warehouse.embedded import warehouse_url

    env = {**os.environ, "META_ACCESS_TOKEN": DEMO_ACCESS_TOKEN, "META_GRAPH_URL": graph_url,
           "ADPIPELINE_CLOCK_URL": clock_url, "ADPIPELINE_CONFIG": config,
           "PYTHONPATH": str(code)}  # that checkout's code, whatever the venv has installed
    command = [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m", "adpipeline.definitions",
               "--select", "meta/ads_insights,meta/account_insights",
               "--partition-range", f"{days[0].isoformat()}...{days[-1].isoformat()}"]
    started, launched = time.perf_counter(), time.time()
    out = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"dagster asset materialize failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    with psycopg.connect(warehouse_url()) as conn:
        rows = conn.execute("SELECT count(*) FROM raw_meta.ads_insights").fetchone()[0]
        failed = conn.execute("SELECT count(*) FROM ops.etl_sync_log WHERE source = 'meta' AND entity = 'ads_insights'"
                              " AND status <> 'success'").fetchone()[0]
    # how much of it the insights step itself took (the rest: code-location load, run start, checks' setup)
    # Dagster writes the duration as 533ms, 2.1s, 4m52s or 1h4m (reading only the first unit cut 4m52s to 240 s)
    step = re.search(r'Finished execution of step "meta_insights" in ([0-9.hms]+)\.', out.stdout + out.stderr)
    step_seconds = sum(float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
                       for n, unit in re.findall(r"([0-9.]+)(ms|h|m|s)", step.group(1))) if step else None
    return {"rows": rows, "seconds": seconds, "failed_scopes": failed, "child_rss_mb": children_rss_mb(),
            "step_seconds": step_seconds, "parts": run_parts(launched, launched + seconds)}


def run_parts(launched: float, ended: float) -> dict[str, float]:
    """Where the run's time went, from its event log (the latest run of the instance): the code-location load
    before Dagster's first event, the run's creation (a planned event per asset partition), the insights step
    until its first output (the windows), its outputs (a materialization per asset partition), the checks."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        events = [(e.timestamp, e.dagster_event.event_type_value, e.dagster_event.step_key)
                  for e in instance.all_logs(run.run_id) if e.dagster_event]

    def at(kind: str, step: str | None = None) -> float:
        return next(t for t, k, s in events if k == kind and (step is None or s == step))

    first, run_start = events[0][0], at("PIPELINE_START")
    step_start, outputs_start = at("STEP_START", "meta_insights"), at("STEP_OUTPUT", "meta_insights")
    step_end, run_end = at("STEP_SUCCESS", "meta_insights"), at("PIPELINE_SUCCESS")
    return {"load": first - launched, "planned": run_start - first, "start": step_start - run_start,
            "windows": outputs_start - step_start, "outputs": step_end - outputs_start, "checks": run_end - step_end,
            "exit": ended - run_end}


def phase_copy() -> dict:
    import psycopg

    from adpipeline.sources.meta.tables import ADS_INSIGHTS
    from adpipeline.warehouse.embedded import warehouse_url
    from adpipeline.warehouse.loader import _tuples

    columns = ADS_INSIGHTS.load_columns
    types = [*(t.split("(")[0] for t in ADS_INSIGHTS.columns.values()), "jsonb"]
    rows, seconds, cpu = 0, 0.0, 0.0
    with psycopg.connect(warehouse_url()) as read, psycopg.connect(warehouse_url()) as write:
        write.execute(f"DROP SCHEMA IF EXISTS {COPY_SCHEMA} CASCADE")
        write.execute(f"CREATE SCHEMA {COPY_SCHEMA}")
        write.execute(f"CREATE TABLE {COPY_SCHEMA}.ads_insights (LIKE raw_meta.ads_insights INCLUDING ALL)")
        write.commit()
        statement = f"COPY {COPY_SCHEMA}.ads_insights ({', '.join(columns)}) FROM STDIN"
        with read.cursor(name="rows") as source:
            source.itersize = 20_000
            source.execute(f"SELECT {', '.join(columns)} FROM raw_meta.ads_insights")
            while batch := source.fetchmany(20_000):  # read untimed; only the COPY is measured
                records = [dict(zip(columns, values)) for values in batch]
                started, used = time.perf_counter(), time.process_time()
                with write.cursor() as cur, cur.copy(statement) as copy:
                    copy.set_types(types)
                    for values in _tuples(records, columns):
                        copy.write_row(values)
                write.commit()
                seconds += time.perf_counter() - started
                cpu += time.process_time() - used
                rows += len(batch)
        write.execute(f"DROP SCHEMA {COPY_SCHEMA} CASCADE")
        write.commit()
    return {"rows": rows, "seconds": seconds, "cpu": cpu}


def phase_dlt(python: str, graph_url: str, accounts: list[str], days: list[date]) -> dict:
    """dlt's rest_api source (its own venv) into the same Postgres, merge on (ad_id, date_start)."""
    import psycopg

    from adpipeline.sandbox.meta import DEMO_ACCESS_TOKEN
    from adpipeline.warehouse.embedded import warehouse_url

    url = warehouse_url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {DLT_SCHEMA} CASCADE")
    spec = {"graph_url": graph_url, "token": DEMO_ACCESS_TOKEN, "accounts": accounts, "since": days[0].isoformat(),
            "until": days[-1].isoformat(), "dsn": url, "schema": DLT_SCHEMA,
            "pipelines_dir": scratch_dir("bench-dlt-")}
    started = time.perf_counter()
    out = subprocess.run([python, str(Path(__file__).with_name("dlt_meta.py"))], input=json.dumps(spec), text=True,
                         capture_output=True, env={**os.environ, "RUNTIME__LOG_LEVEL": "WARNING"})
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"dlt failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT count(*) FROM {DLT_SCHEMA}.ads_insights").fetchone()[0]
        conn.execute(f"DROP SCHEMA {DLT_SCHEMA} CASCADE")
    return {"rows": rows, "seconds": seconds, "child_rss_mb": children_rss_mb()}


# ---- orchestration -----------------------------------------------------------------------------------


def process_cpu(pid: int | None) -> float:
    """CPU seconds of a process and all its children, including children already gone (Postgres backends)."""
    if pid is None:
        return float("nan")
    import psutil

    process = psutil.Process(pid)
    times = process.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in process.children(recursive=True):
        try:
            child_times = child.cpu_times()
        except psutil.Error:
            continue
        total += child_times.user + child_times.system
    return total


def run_phase(name: str, *args: str, watch: dict[str, int | None] | None = None,
              env: dict[str, str] | None = None) -> dict:
    before = {k: process_cpu(pid) for k, pid in (watch or {}).items()}
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, __file__, "--phase", name, *args], capture_output=True, text=True,
                         cwd=PROJECT, env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # whole-phase CPU of the other processes (the sandbox's includes its idle wait; its part is negligible)
    result.update({f"cpu_{k}": process_cpu(pid) - before[k] for k, pid in (watch or {}).items()})
    result["load"] = (load, os.getloadavg()[0])  # 1-minute load average when the phase started and ended
    return result


def dagster_home(code: Path, home: Path) -> str:
    """A DAGSTER_HOME as the checkout `code` prepares it: its instance settings (storage included) are part of
    what it ships, so each round runs on its own."""
    prepare = "import sys; from pathlib import Path; from adpipeline.stack import prepare_dagster_home as p; p(Path(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", prepare, str(home)], cwd=code, env={**os.environ, "PYTHONPATH": str(code)},
                   check=True)
    return str(home)


def shape_config(shape: Shape, home: Path) -> str:
    """adpipeline.yaml with the shape's ad accounts (what a user with these accounts would configure)."""
    import yaml

    config = yaml.safe_load((PROJECT / "adpipeline.yaml").read_text())
    if shape.extra_accounts:
        config["meta"]["accounts"] = [
            {"id": account, "name": f"Sandbox Portfolio {i + 1:02d}", "timezone": "America/Jamaica", "currency": "USD"}
            for i, account in enumerate(shape.accounts)]
    path = home / f"adpipeline-{shape.name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def truncate(url: str) -> None:
    import psycopg

    with psycopg.connect(url) as conn:  # start from empty tables so every row is new
        conn.execute("TRUNCATE raw_meta.ads_insights, raw_meta.account_insights")
        conn.execute("DELETE FROM ops.etl_sync_log WHERE source = 'meta' AND entity = 'ads_insights'")


def run_shape(shape: Shape, home: Path, server, dlt_python: str | None, baseline: Path | None,
              baseline_env: dict[str, str] | None = None) -> None:
    """The phases in rounds, so that every ratio compares figures taken at about the same load: each pipeline
    run (this checkout's, then `baseline`'s) has the serve ceiling measured just before it and the COPY ceiling
    just after it (on the rows it loaded); the serve ceiling is measured once more at the end, and the
    sequential client and dlt run between the pipeline runs."""
    from adpipeline.sandbox.process import SandboxProcess
    from adpipeline.warehouse.embedded import WAREHOUSE_URL_ENV

    url = os.environ[WAREHOUSE_URL_ENV]
    days = day_range(shape.days)
    day_list = ",".join(d.isoformat() for d in days)
    accounts = ",".join(shape.accounts)
    config = shape_config(shape, home)
    rounds: list[dict[str, dict]] = []
    with SandboxProcess(scale=shape.scale) as sandbox:
        graph_url, clock_url = f"{sandbox.base_url}/meta/v24.0", f"{sandbox.base_url}/_admin/clock"
        if shape.extra_accounts:
            sandbox.admin._call("POST", "/meta/script", {"extra_accounts": shape.extra_accounts})
        if shape.latency:  # every Graph call waits this long before it is answered (other calls go on meanwhile)
            sandbox.admin.add_faults({"path": "/meta/*", "delay": shape.latency, "count": None})
        print(f"\n== shape {shape.name}: {len(shape.accounts)} accounts x {len(days)} days ({days[0]}..{days[-1]}), "
              f"sandbox scale {shape.scale:g}, latency {shape.latency * 1000:.0f} ms per call; "
              f"warehouse {url.split('@')[-1]}")
        postmaster = server.postmaster()[0] if server is not None else None
        watch = {"sandbox": sandbox._proc.pid if sandbox._proc else None, "postgres": postmaster}

        def phase(name: str, *args: str, env: dict[str, str] | None = None) -> dict:
            before = sandbox.admin.requests()["total"]
            result = run_phase(name, *args, watch=watch, env=env)
            result["api_calls"] = sandbox.admin.requests()["total"] - before
            return result

        def throttled() -> int:
            return sandbox.admin._call("GET", "/meta/usage").get("throttled_responses") or 0

        codes = [("pipeline", PROJECT, {}), *([("baseline", baseline, baseline_env or {})] if baseline else [])]
        for i, (label, code, env) in enumerate(codes):
            results: dict[str, dict] = {}
            truncate(url)
            results["serve"] = phase("serve", graph_url, accounts, day_list)
            before = throttled()
            instance = {"DAGSTER_HOME": dagster_home(code, home / f"dagster-{label}")}
            results[label] = phase("pipeline", graph_url, clock_url, config, str(code), day_list,
                                   env={**instance, **env})
            results[label]["throttled"] = throttled() - before
            results[label]["code"] = " ".join([str(code), *(f"{k}={v}" for k, v in env.items())])
            results["raw COPY"] = run_phase("copy", "-", "-", day_list, watch={"postgres": postmaster})
            if i == 0 and shape.latency:
                results["sequential"] = phase("sequential", graph_url, accounts, day_list)
            if i == 0 and dlt_python:
                results["dlt"] = phase("dlt", dlt_python, graph_url, accounts, day_list)
            rounds.append(results)
            report(shape, results, dlt_python)  # printed as soon as it ends: a long run cut short still says something
        end = phase("serve", graph_url, accounts, day_list)
        print(f"serve (end): {end['rows']:,} rows in {end['seconds']:.1f} s = {end['rows'] / end['seconds']:,.0f} rows/s, "
              f"load {end['load'][0]:.1f} -> {end['load'][1]:.1f}", flush=True)
    if baseline:
        new, old = rounds[0]["pipeline"], rounds[1]["baseline"]
        print(f"{shape.name}: this checkout {new['seconds']:.1f} s end to end (step {new.get('step_seconds') or 0:.1f} s) "
              f"vs baseline {old['seconds']:.1f} s (step {old.get('step_seconds') or 0:.1f} s) = "
              f"{old['seconds'] / new['seconds']:.2f}x end to end")


def report(shape: Shape, results: dict[str, dict], dlt_python: str | None) -> None:
    def rate(result: dict) -> float:
        return result["rows"] / result["seconds"]

    def per_row(result: dict, key: str) -> str:
        value = result.get(key)
        return "-" if value is None or value != value else f"{1e6 * value / result['rows']:.1f}"

    label = "pipeline" if "pipeline" in results else "baseline"
    pipeline = results[label]
    print(f"\n-- round: {label} ({pipeline['code']})")
    print(f"{'phase':11} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'API calls':>9} {'peak RSS':>9}   CPU us/row: "
          f"{'client':>6} {'sandbox':>7} {'postgres':>8}   load avg (start -> end)")
    for name, result in results.items():
        rss = max(result["peak_rss_mb"], result.get("child_rss_mb", 0.0))
        print(f"{name:11} {result['rows']:>9,} {result['seconds']:>8.1f} {rate(result):>9,.0f} "
              f"{result.get('api_calls', '-'):>9} {rss:>6.0f} MB   {'':11} {per_row(result, 'cpu'):>6} "
              f"{per_row(result, 'cpu_sandbox'):>7} {per_row(result, 'cpu_postgres'):>8}   "
              f"{result['load'][0]:.1f} -> {result['load'][1]:.1f}")
    print(f"({os.cpu_count()} CPUs)")
    ceiling = min(rate(results["serve"]), rate(results["raw COPY"]))
    rss = max(pipeline["peak_rss_mb"], pipeline["child_rss_mb"])
    line = (f"{shape.name} [{label}]: {rate(pipeline):,.0f} rows/s = {rate(pipeline) / ceiling:.0%} of "
            f"min(serve, COPY) = {ceiling:,.0f} rows/s (serve just before, COPY just after); peak RSS {rss:.0f} MB")
    if "dlt" in results:
        line += f"; {rate(pipeline) / rate(results['dlt']):.1f}x dlt"
    elif label == "pipeline":
        line += f"; dlt column skipped (no dlt at {dlt_python or DLT_PYTHON}: it is not a project dependency)"
    if "sequential" in results:
        line += f"; {rate(pipeline) / rate(results['sequential']):.1f}x the sequential client"
    print(line)
    if pipeline.get("parts"):
        print(f"{label}: where the {pipeline['seconds']:.1f} s went: " + ", ".join(
            f"{name} {value:.1f} s" for name, value in pipeline["parts"].items()))
    if pipeline.get("step_seconds"):
        print(f"{label}: the meta_insights step took {pipeline['step_seconds']:.1f} s of {pipeline['seconds']:.1f} s "
              f"({pipeline['rows'] / pipeline['step_seconds']:,.0f} rows/s inside the step)")
    print(f"sandbox throttled responses during the {label} run: {pipeline['throttled']}", flush=True)
    if pipeline.get("failed_scopes"):
        print(f"WARNING: {pipeline['failed_scopes']} sync-log rows not 'success'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES), help="shape(s) to run (default: all)")
    parser.add_argument("--days", type=int, help="days per shape (default: the shape's)")
    parser.add_argument("--latency", type=float, help="seconds per Graph call for the latency shape (default 0.2)")
    parser.add_argument("--scale", type=float, help="sandbox scale instead of the shape's (higher: more ads delivering per account-day)")
    parser.add_argument("--dlt-python", default=DLT_PYTHON, help="python of a venv with dlt[postgres]")
    parser.add_argument("--baseline", type=Path, help="another checkout (e.g. main): its pipeline runs too, in its "
                        "own round, for a before/after in one run")
    parser.add_argument("--baseline-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment for the baseline round's dagster process only (e.g. --baseline DIR of "
                        "this checkout with a Dagster setting, for an A/B of the setting)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.phase:
        a = options.args
        days = [date.fromisoformat(d) for d in a[-1].split(",")]
        result = {"serve": lambda: phase_serve(a[0], a[1].split(","), days, sequential=False),
                  "sequential": lambda: phase_serve(a[0], a[1].split(","), days, sequential=True),
                  "pipeline": lambda: phase_pipeline(a[0], a[1], a[2], days, Path(a[3])),
                  "dlt": lambda: phase_dlt(a[0], a[1], a[2].split(","), days),
                  "copy": phase_copy}[options.phase]()
        print(json.dumps({**result, "peak_rss_mb": round(peak_rss_mb(), 1)}, default=str))
        return

    from adpipeline.stack import prepare_dagster_home
    from adpipeline.transform.project import ensure_manifest
    from adpipeline.warehouse import db
    from adpipeline.warehouse.embedded import WAREHOUSE_URL_ENV, EmbeddedServer, export_environment

    shapes = [SHAPES[name] for name in options.shape or SHAPES]
    if options.days or options.latency is not None or options.scale:
        shapes = [Shape(s.name, s.extra_accounts, options.scale or s.scale, options.days or s.days,
                        options.latency if s.latency and options.latency is not None else s.latency) for s in shapes]
    dlt_python = options.dlt_python if Path(options.dlt_python).exists() else None
    home = Path(scratch_dir("adpipeline-bench-"))
    os.environ["ADPIPELINE_HOME"] = str(home)
    server = None
    if not os.environ.get(WAREHOUSE_URL_ENV):
        server = EmbeddedServer(home)
        os.environ[WAREHOUSE_URL_ENV] = server.ensure_started()
    try:
        url = os.environ[WAREHOUSE_URL_ENV]
        export_environment(url)
        db.migrate(url)
        prepare_dagster_home(Path(os.environ["DAGSTER_HOME"]))
        ensure_manifest()
        for shape in shapes:
            run_shape(shape, home, server, dlt_python, options.baseline,
                      dict(item.split("=", 1) for item in options.baseline_env))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
