select
    id as campaign_id,
    case when account_id like 'act!_%' escape '!' then account_id else 'act_' || account_id end as account_id,
    name as campaign_name,
    objective,
    status,
    effective_status,
    buying_type,
    daily_budget_minor,
    created_time as created_at,
    updated_time as updated_at,
    start_time as starts_at,
    stop_time as stops_at,
    loaded_at
from {{ source('raw_meta', 'campaigns') }}
