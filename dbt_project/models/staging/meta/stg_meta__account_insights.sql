{{ config(tags=['meta_daily']) }}
-- One row per ad account and day (the account's calendar day): Meta's own account totals, which
-- meta/ads_insights is reconciled against. Same single definition of conversions as the ad rows; the
-- per-window columns stay in raw_meta.
select
    "date" as date_day,
    case when account_id like 'act!_%' escape '!' then account_id else 'act_' || account_id end as account_id,
    upper(currency) as currency,
    coalesce(spend, 0)::numeric as spend,
    coalesce(impressions, 0)::bigint as impressions,
    coalesce(clicks, 0)::bigint as clicks,
    coalesce(reach, 0)::bigint as reach,
    coalesce(conversions, 0)::numeric as conversions,
    coalesce(purchase_value, 0)::numeric as purchase_value,
    loaded_at
from {{ source('raw_meta', 'account_insights') }}
