-- Every campaign with its ad account.
select
    campaign.campaign_id,
    campaign.campaign_name,
    campaign.objective,
    campaign.status,
    campaign.effective_status,
    campaign.buying_type,
    campaign.account_id,
    account.account_name,
    account.currency,
    account.time_zone,
    campaign.starts_at,
    campaign.stops_at,
    campaign.created_at,
    campaign.updated_at
from {{ ref('stg_meta__campaigns') }} as campaign
left join {{ ref('stg_meta__ad_accounts') }} as account on account.account_id = campaign.account_id
