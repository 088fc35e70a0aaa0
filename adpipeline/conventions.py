"""What every asset of this project carries (a test walks the Definitions and enforces it)."""

OWNER = "team:data-engineering"
# kinds shown in the UI: the technology that computes the asset and where it lands
LANDING_KINDS = {"python", "postgres"}

# Run-queue priority (Dagster's run queue starts higher `dagster/priority` first; bulk loads have 0): the token
# job and the checks-only job go before a backlog of loads, so a queue can neither let the token expire nor
# hide that the pipeline is late.
URGENT_RUN_TAGS = {"dagster/priority": "10"}
