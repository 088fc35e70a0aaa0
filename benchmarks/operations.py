"""What scheduled work costs to operate, each figure beside its baseline, in one run (issue 15).

    uv run --frozen python benchmarks/operations.py [--skip-demo] [--repeat 3] [--load-against REV]

On a fresh ADPIPELINE_HOME (embedded warehouse, sandbox APIs, a Dagster instance on Postgres storage), as a
user runs things (subprocesses of the venv's own commands):
  load      `dagster definitions validate`  beside `python -c "import dagster, dagster_dbt"` (the libraries'
            floor; goal <= 1.5x) and `python -c "import adpipeline.definitions"`
  jobs      each scheduled job through `dagster job execute` (its own executor): wall time beside the sum
            of its steps' own durations (Dagster's step stats) plus one code-location load
            (goal: wall <= 2 x steps + 1 load)
  dbt       the dbt_models_job step beside dbt's own build time (run_results elapsed; goal <= 2x), and
            whether dbt parsed partially
  demo      `adpipeline demo` wall time from a warm venv (goal <= 90 s)
  --load-against REV: only the load figures, of HEAD and of REV's files (git archive, on this venv), the
            commands interleaved so the machine's load hits both alike
  --demo-against REV: only the demo, of HEAD and of REV (its files on this venv), alternately, each with the
            demo's own step times; with --fresh-clone, each round on new checkouts of both without a dbt manifest
Medians of --repeat runs where a figure is cheap to repeat. The machine is shared and noisy: read ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scratch import scratch_dir

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
_DBT_REPORT = re.compile(r"dbt build: parse (\w+).*dbt's own time ([\d.]+) s, the step's ([\d.]+) s")


def wall(cmd: list[str], env: dict[str, str] | None = None, check: bool = True, cwd: Path = PROJECT) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return elapsed


def median_wall(cmd: list[str], repeat: int, env: dict[str, str] | None = None, cwd: Path = PROJECT) -> float:
    return statistics.median(wall(cmd, env, cwd=cwd) for _ in range(repeat))


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ADPIPELINE_", "DAGSTER_", "META_", "GA4_", "BREEZEWAY_"))}
    env["ADPIPELINE_HOME"] = str(home)
    return env


def bench_load(repeat: int) -> float:
    env = clean_env(Path(scratch_dir("bench-load-")))
    floor = median_wall([str(BIN / "python"), "-c", "import dagster, dagster_dbt"], repeat, env)
    defs = median_wall([str(BIN / "python"), "-c", "import adpipeline.definitions"], repeat, env)
    validate = median_wall([str(BIN / "dagster"), "definitions", "validate"], repeat, env)
    trivial = Path(scratch_dir("bench-trivial-")) / "one_asset.py"
    trivial.write_text("import dagster as dg\nimport dagster_dbt\n\n@dg.asset\ndef one(): ...\n\n"
                       "defs = dg.Definitions(assets=[one])\n")
    # from the file's own folder: in the project folder dagster also reads pyproject's [tool.dagster]
    command_floor = median_wall([str(BIN / "dagster"), "definitions", "validate", "-f", str(trivial)], repeat, env,
                                cwd=trivial.parent)
    print(f"{'load':10} {'import dagster, dagster_dbt':40} {floor:7.2f} s  (floor)")
    print(f"{'':10} {'import adpipeline.definitions':40} {defs:7.2f} s  {defs / floor:5.2f}x floor")
    print(f"{'':10} {'dagster definitions validate':40} {validate:7.2f} s  {validate / floor:5.2f}x floor  (goal <= 1.50x)")
    print(f"{'':10} {'validate -f one_asset.py (+dagster_dbt)':40} {command_floor:7.2f} s  {command_floor / floor:5.2f}x floor"
          f"  (the command's own floor; ours is {validate / command_floor:.2f}x it)")
    return defs


def checkout(rev: str, *, manifest: bool = True) -> Path:
    """`rev`'s files (git archive) beside the project, with its dbt manifest built unless `manifest` is false (a
    fresh clone, as `.ci/run` has): its code runs on this venv (the folder comes first on sys.path), so both
    trees' figures come from one run."""
    tree = Path(scratch_dir(f"bench-{rev}-"))
    archive = subprocess.run(["git", "archive", rev], cwd=PROJECT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    if not manifest:
        return tree
    target = tree / "dbt_project" / "target"
    target.mkdir(exist_ok=True)
    subprocess.run([str(BIN / "python"), "-m", "adpipeline.transform.project"], cwd=tree, check=True,
                   env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True)
    return tree


def bench_load_against(rev: str, repeat: int) -> None:
    """The load figures of HEAD and of `rev`, interleaved (a shared machine's load then hits both alike)."""
    trees = {"HEAD": PROJECT, rev: checkout(rev)}
    env = clean_env(Path(scratch_dir("bench-load-")))
    commands = {"import dagster, dagster_dbt": [str(BIN / "python"), "-c", "import dagster, dagster_dbt"],
                "import adpipeline.definitions": [str(BIN / "python"), "-c", "import adpipeline.definitions"],
                "dagster definitions validate": [str(BIN / "dagster"), "definitions", "validate"]}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeat):
        for name, tree in trees.items():
            for label, cmd in commands.items():
                times.setdefault((name, label), []).append(
                    wall(cmd, {**env, "PYTHONPATH": str(tree)}, cwd=tree))
    for name in trees:
        floor = statistics.median(times[(name, "import dagster, dagster_dbt")])
        for label in commands:
            seconds = statistics.median(times[(name, label)])
            print(f"{'load ' + name[:5]:10} {label:40} {seconds:7.2f} s  {seconds / floor:5.2f}x floor"
                  f"  (runs: {', '.join(f'{t:.2f}' for t in times[(name, label)])})")


def run_demo_of(tree: Path) -> tuple[float, str, dict[str, float]]:
    """`adpipeline demo` of a tree's code on a fresh home: wall time, its verdict line and its own step times,
    each dbt step's parse and times (from its demo-events.log) among them."""
    home = Path(scratch_dir("bench-demo-"))
    env = {**clean_env(home), "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "python"), "-m", "adpipeline.cli", "demo"], cwd=tree, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    verdict = next((line for line in reversed(done.stdout.splitlines()) if line.startswith("demo ")),
                   f"exit {done.returncode}: {(done.stdout + done.stderr)[-2000:]}")
    steps = {m.group(1).strip(): float(m.group(2))
             for m in re.finditer(r"^((?:set-up|batch \d+|checks|total)[^\n]*?)\s+([\d.]+)$", done.stdout, re.M)}
    events = home / "dagster_home" / "demo-events.log"
    reports = _DBT_REPORT.finditer(events.read_text(errors="replace") if events.exists() else "")
    for n, m in enumerate(reports, 1):
        steps[f"  dbt step {n}: parse {m.group(1)}, dbt's own {m.group(2)} s; the step's"] = float(m.group(3))
    return seconds, verdict, steps


def bench_demo() -> None:
    seconds, verdict, _ = run_demo_of(PROJECT)
    print(f"{'demo':10} {'adpipeline demo (fresh home)':40} {seconds:7.2f} s  (goal <= 90 s)  {verdict}")


def bench_demo_against(rev: str, repeat: int, fresh_clone: bool = False) -> None:
    """The demo of HEAD and of `rev`, alternately (the machine's load then hits both alike), step by step;
    `fresh_clone`: each round on new checkouts of both, without a dbt manifest or parse state."""
    trees = {} if fresh_clone else {"HEAD": PROJECT, rev: checkout(rev)}
    for round_ in range(repeat):
        if fresh_clone:
            trees = {name: checkout(name, manifest=False) for name in ("HEAD", rev)}
        results = {name: run_demo_of(tree) for name, tree in trees.items()}
        for name, (seconds, verdict, steps) in results.items():
            print(f"{'demo ' + name[:5]:10} round {round_ + 1}: {seconds:7.2f} s wall (goal <= 90 s), "
                  f"load {os.getloadavg()[0]:.2f}  {verdict}")
            for label, step in steps.items():
                print(f"{'':10}   {label[:70]:70} {step:7.1f} s")


def bench_jobs(load_seconds: float) -> None:
    import dagster as dg

    from adpipeline import clock
    from adpipeline.config import get_config
    from adpipeline.sources.meta.partitions import hourly_range, range_tags
    from adpipeline.stack import local_stack

    os.environ.update(clean_env(Path(scratch_dir("bench-jobs-"))))
    for key in [k for k in os.environ if k.startswith(("DAGSTER_", "META_", "GA4_", "BREEZEWAY_"))]:
        del os.environ[key]
    with local_stack(sandbox=True) as stack:
        config = get_config()
        region = config.breezeway.regions[0].code
        insights_range = hourly_range(clock.now(), config.reporting_timezone)
        jobs = [  # in dependency order, so each finds what it reads
            ("meta_token_job", {}),
            ("meta_hierarchy_job", {}),
            ("meta_insights_job", range_tags(insights_range)),
            ("breezeway_reservations_job", {"dagster/partition": region}),
            ("breezeway_daily_job", {"dagster/partition": region}),
            # the unpartitioned models first (the Meta facts need stg_fx_rates); fct_marketing_channel_daily
            # needs the GA4 facts, which this set-up does not build, so this run ends FAILURE (its time counts)
            ("dbt_models_job", {}),
            ("dbt_meta_daily_job", range_tags(insights_range)),
            ("dbt_meta_daily_job", range_tags(insights_range)),  # again: the first run's parse state is reused
            ("monitoring_checks_job", {}),
        ]
        print(f"{'jobs':10} {'job':28} {'wall':>8} {'steps':>8} {'goal':>8}  ratio  (goal = 2 x steps + {load_seconds:.1f} s load)")
        with dg.DagsterInstance.get() as instance:
            for job, tags in jobs:
                cmd = [str(BIN / "dagster"), "job", "execute", "-m", "adpipeline.definitions", "-j", job]
                if tags:
                    cmd += ["--tags", json.dumps(tags)]
                seconds = wall(cmd, dict(os.environ), check=False)
                run = instance.get_runs(filters=dg.RunsFilter(job_name=job), limit=1)[0]
                stats = instance.get_run_step_stats(run.run_id)
                steps = sum((s.end_time or 0) - (s.start_time or 0) for s in stats)
                goal = 2 * steps + load_seconds
                status = "" if run.status == dg.DagsterRunStatus.SUCCESS else f"  [{run.status.value}]"
                print(f"{'':10} {job:28} {seconds:7.2f}s {steps:7.2f}s {goal:7.2f}s  {seconds / goal:5.2f}"
                      f"  ({len(stats)} steps){status}")
                if job.startswith("dbt_"):
                    for entry in instance.all_logs(run.run_id):
                        found = _DBT_REPORT.search(entry.user_message or "")
                        if found:
                            parse, own, step = found.group(1), float(found.group(2)), float(found.group(3))
                            print(f"{'dbt':10} {'dbt build in its step':28} {step:7.2f}s {own:7.2f}s"
                                  f" {'(dbt)':>8}  {step / own:5.2f}x dbt's own time (goal <= 2x), parse {parse}")
        print(f"{'':10} stack: warehouse {stack.warehouse_url.split('@')[-1]}, sandbox {stack.sandbox_url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--load-against", metavar="REV",
                        help="only the load figures, of HEAD and of REV (its files on this venv), interleaved")
    parser.add_argument("--demo-against", metavar="REV",
                        help="only the demo, of HEAD and of REV (its files on this venv), alternately")
    parser.add_argument("--fresh-clone", action="store_true",
                        help="with --demo-against: each round on new checkouts of both (no dbt manifest, as .ci/run)")
    args = parser.parse_args()
    print(f"project {PROJECT}  python {sys.version.split()[0]}  load average {os.getloadavg()[0]:.2f}")
    if args.load_against:
        bench_load_against(args.load_against, args.repeat)
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
        return
    if args.demo_against:
        bench_demo_against(args.demo_against, args.repeat, args.fresh_clone)
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
        return
    load_seconds = bench_load(args.repeat)
    if not args.skip_demo:
        bench_demo()
    bench_jobs(load_seconds)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
