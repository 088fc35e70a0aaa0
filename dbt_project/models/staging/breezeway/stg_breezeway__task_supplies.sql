-- Supplies used by a task, money beside its currency (replaced with its task on every load).
select
    region_code || ':' || task_id as task_key,
    region_code,
    task_id,
    region_code || ':' || supply_id as supply_key,
    supply_id,
    name as supply_name,
    quantity,
    unit_cost,
    total_cost,
    upper(currency) as currency,
    coalesce(billable, false) as is_billable,
    loaded_at
-- loaded by breezeway/tasks with its task: read beside that source (one dbt source per Dagster asset)
{%- set tasks = source('raw_breezeway', 'tasks') %}
from {{ tasks.incorporate(path={'identifier': 'task_supplies'}) }}
