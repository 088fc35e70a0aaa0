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
from {{ source('raw_breezeway', 'task_supplies') }}
