"""What every asset of this project carries (a test walks the Definitions and enforces it)."""

OWNER = "team:data-engineering"
# kinds shown in the UI: the technology that computes the asset and where it lands
LANDING_KINDS = {"python", "postgres"}

# Run-queue priority (Dagster's run queue starts higher `dagster/priority` first; bulk loads have 0): the token
# job and the checks-only job go before a backlog of loads, so a queue can neither let the token expire nor
# hide that the pipeline is late.
URGENT_RUN_TAGS = {"dagster/priority": "10"}

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
