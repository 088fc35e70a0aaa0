-- Every ad with its ad set, campaign and ad account (names and statuses as last loaded).
select
    ad.ad_id,
    ad.ad_name,
    ad.status as ad_status,
    ad.effective_status as ad_effective_status,
    ad.adset_id,
    adset.adset_name,
    ad.campaign_id,
    campaign.campaign_name,
    campaign.objective as campaign_objective,
    ad.account_id,
    account.account_name,
    account.currency,
    account.time_zone,
    ad.created_at,
    ad.updated_at
from {{ ref('stg_meta__ads') }} as ad
left join {{ ref('stg_meta__adsets') }} as adset on adset.adset_id = ad.adset_id
left join {{ ref('stg_meta__campaigns') }} as campaign on campaign.campaign_id = ad.campaign_id
left join {{ ref('stg_meta__ad_accounts') }} as account on account.account_id = ad.account_id
