"""What every asset and job of this project carries (a test walks the Definitions and enforces it)."""

import dagster as dg

OWNER = "team:data-engineering"
# kinds shown in the UI: the technology that computes the asset and where it lands
LANDING_KINDS = {"python", "postgres"}

# Run-queue priority (Dagster's run queue starts higher `dagster/priority` first; bulk loads have 0): the token
# job and the checks-only job go before a backlog of loads, so a queue can neither let the token expire nor
# hide that the pipeline is late.
URGENT_RUN_TAGS = {"dagster/priority": "10"}

# Executors, chosen per job in one place (the job definitions pass these; tests/test_executors.py pins the
# choice). Dagster's default starts a process per step and each reloads the code location (~4-8 s), which
# for the 15-minute checks job meant minutes of imports for seconds of work.
#   LIGHT: steps run in the run worker's process, one after another — every scheduled job (checks, token,
#          hierarchy, insights, Breezeway loads, dbt, retention). Pools are still honoured.
#   PARALLEL: independent heavy steps in parallel processes forked from a forkserver that imported the
#          definitions once per run, so a step does not re-import them: runs launched from the UI, whose
#          selection can be anything.
# Measured with benchmarks/operations.py: a forked step still costs ~1-2 s (fork, job resolution, resources),
# so parallel pays only where several steps are long and independent. Meta insights (two steps, one heavy)
# ran 2x slower forked than in one process; a region's Breezeway daily load (one heavy step of five, and 17
# sub-second check steps) took 42.5 s forked for 16.5 s of steps.
LIGHT_EXECUTOR = dg.in_process_executor
PARALLEL_EXECUTOR = dg.multiprocess_executor.configured(
    {"max_concurrent": 2,  # steps wait on the APIs more than on the CPU; pools bound each API further
     "start_method": {"forkserver": {"preload_modules": ["adpipeline.definitions"]}}},
    name="forkserver_multiprocess",
)

# The API (or dbt) a job's runs call. The production run queue limits how many runs of each run at once
# (tag_concurrency_limits in deploy/compose/dagster.yaml and deploy/helm/values.yaml, held to RUNS_AT_ONCE by
# tests/test_deploy.py), below what each API tolerates: Meta's rate budget is per ad account and shared by every
# call, so parallel runs only buy throttles; Breezeway runs keep 4 requests in flight each and its proxy 403s
# bursts; a GA4 property allows 10 concurrent requests; dbt has one slot (pool `dbt`). The token and checks jobs
# carry no API tag: a backlog of loads must never hold them back (URGENT_RUN_TAGS puts them first).
API_TAG = "adpipeline/api"
RUNS_AT_ONCE = {"meta": 2, "breezeway": 4, "ga4": 3, "dbt": 1}


def api_tags(api: str) -> dict[str, str]:
    if api not in RUNS_AT_ONCE:
        raise ValueError(f"no run limit for {api!r}: add it to RUNS_AT_ONCE and the deploy/ run queues")
    return {API_TAG: api}
