select
    id as account_id,
    account_id as account_number,
    name as account_name,
    upper(currency) as currency,
    timezone_name as time_zone,
    account_status,
    loaded_at
from {{ source('raw_meta', 'ad_accounts') }}
