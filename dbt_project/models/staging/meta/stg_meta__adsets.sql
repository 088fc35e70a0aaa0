select
    id as adset_id,
    case when account_id like 'act!_%' escape '!' then account_id else 'act_' || account_id end as account_id,
    campaign_id,
    name as adset_name,
    status,
    effective_status,
    daily_budget_minor,
    billing_event,
    optimization_goal,
    created_time as created_at,
    updated_time as updated_at,
    loaded_at
from {{ source('raw_meta', 'adsets') }}
