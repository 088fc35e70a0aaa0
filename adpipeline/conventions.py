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
#   LIGHT: steps run in the run worker's process, one after another — jobs of small or chained steps
#          (checks, token, hierarchy, insights, one-step loads, dbt, retention). Pools are still honoured.
#   PARALLEL: independent heavy steps (a region's five Breezeway entities) in parallel processes forked from
#          a forkserver that imported the definitions once per run, so a step does not re-import them.
# Measured with benchmarks/operations.py: a forked step still costs ~1-2 s (fork, job resolution, resources),
# so parallel pays only where steps are long and independent; Meta insights (two steps, one heavy) ran 2x
# slower forked than in one process.
LIGHT_EXECUTOR = dg.in_process_executor
PARALLEL_EXECUTOR = dg.multiprocess_executor.configured(
    {"max_concurrent": 2,  # steps wait on the APIs more than on the CPU; pools bound each API further
     "start_method": {"forkserver": {"preload_modules": ["adpipeline.definitions"]}}},
    name="forkserver_multiprocess",
)
