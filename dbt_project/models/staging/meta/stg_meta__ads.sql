select
    id as ad_id,
    case when account_id like 'act!_%' escape '!' then account_id else 'act_' || account_id end as account_id,
    campaign_id,
    adset_id,
    name as ad_name,
    status,
    effective_status,
    creative_id,
    created_time as created_at,
    updated_time as updated_at,
    loaded_at
from {{ source('raw_meta', 'ads') }}
