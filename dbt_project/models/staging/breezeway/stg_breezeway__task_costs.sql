-- Costs entered on a task (labor, material, fee), money beside its currency.
select
    region_code || ':' || task_id as task_key,
    region_code,
    task_id,
    cost_id,
    lower(cost_type) as cost_type,
    description,
    amount,
    upper(currency) as currency,
    coalesce(billable, false) as is_billable,
    loaded_at
-- loaded by breezeway/tasks with its task: read beside that source (one dbt source per Dagster asset)
{%- set tasks = source('raw_breezeway', 'tasks') %}
from {{ tasks.incorporate(path={'identifier': 'task_costs'}) }}
