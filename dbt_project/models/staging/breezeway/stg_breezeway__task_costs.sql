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
from {{ source('raw_breezeway', 'task_costs') }}
