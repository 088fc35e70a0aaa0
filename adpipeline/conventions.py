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
#          definitions once per run, so a step does not re-import them.
#   PER_RUN: the Definitions' default, for runs that are not one of our jobs (`dagster asset materialize`, UI
#          selections, whose selection can be anything): LIGHT unless the run's plan has two heavy steps that
#          can run at the same time, then PARALLEL.
# Measured with benchmarks/operations.py: a forked step still costs ~1-2 s (fork, job resolution, resources),
# so parallel pays only where several steps are long and independent. Meta insights (two steps, one heavy)
# ran 2x slower forked than in one process; a region's Breezeway daily load (one heavy step of five, and 17
# sub-second check steps) took 42.5 s forked for 16.5 s of steps.
LIGHT_EXECUTOR = dg.in_process_executor
_PARALLEL_CONFIG = {
    "max_concurrent": 2,  # steps wait on the APIs more than on the CPU; pools bound each API further
    "start_method": {"forkserver": {"preload_modules": ["adpipeline.definitions"]}},
}
PARALLEL_EXECUTOR = dg.multiprocess_executor.configured(_PARALLEL_CONFIG, name="forkserver_multiprocess")


def runs_heavy_steps_at_once(plan) -> bool:
    """Whether the plan (a Dagster ExecutionPlan) holds two heavy steps — steps that materialise an asset,
    not only checks — neither of which waits for the other."""
    deps = plan.get_executable_step_deps()  # step key -> the keys it waits for, within this plan
    heavy = [key for key in deps
             if any(out.properties and out.properties.is_asset for out in plan.get_step_by_key(key).step_outputs)]
    upstream: dict[str, set[str]] = {}

    def ancestors(key: str) -> set[str]:
        if key not in upstream:
            upstream[key] = set(deps[key]).union(*(ancestors(dep) for dep in deps[key]))
        return upstream[key]

    return any(b not in ancestors(a) and a not in ancestors(b)
               for i, a in enumerate(heavy) for b in heavy[i + 1:])


class _PerRunExecutor(dg.Executor):
    """Hands the run to the in-process or the multiprocess executor, whichever the plan calls for."""

    def __init__(self, light: dg.Executor, parallel: dg.Executor):
        self._light, self._parallel = light, parallel

    @property
    def retries(self):
        return self._light.retries

    @property
    def step_dependency_config(self):
        return self._light.step_dependency_config

    def execute(self, plan_context, execution_plan):
        parallel = runs_heavy_steps_at_once(execution_plan)
        plan_context.log.info("independent heavy steps: one process per step, forked" if parallel
                              else "no two heavy steps can run at once: every step in this process")
        yield from (self._parallel if parallel else self._light).execute(plan_context, execution_plan)


@dg.executor(name="per_run", config_schema=dg.multiprocess_executor.config_schema)
def _per_run_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    # Both built by Dagster's own creation functions; the in-process one takes the same retry settings.
    config = init_context.executor_config
    light_config = {"retries": config["retries"], "step_dependency_config": config.get("step_dependency_config")}
    def context_of(executor_def: dg.ExecutorDefinition, executor_config) -> dg.InitExecutorContext:
        return dg.InitExecutorContext(job=init_context.job, executor_def=executor_def,
                                      executor_config=executor_config, instance=init_context.instance)

    light = dg.in_process_executor.executor_creation_fn(context_of(dg.in_process_executor, light_config))
    parallel = dg.multiprocess_executor.executor_creation_fn(context_of(dg.multiprocess_executor, config))
    return _PerRunExecutor(light, parallel)


PER_RUN_EXECUTOR = _per_run_executor.configured(_PARALLEL_CONFIG, name="in_process_unless_parallel_heavy_steps")

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
