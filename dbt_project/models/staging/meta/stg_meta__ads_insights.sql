{{ config(tags=['meta_daily']) }}
-- One row per ad and day (the ad account's calendar day). Conversions and purchase value have ONE
-- definition across the project: Meta's `purchase` action under its default attribution (7-day click +
-- 1-day view), as flattened from `actions` / `action_values` by the extraction. The per-window columns
-- stay in raw_meta for analysis and are deliberately not exposed here.
with ranked as (
    select
        *,
        row_number() over (partition by ad_id, "date" order by loaded_at desc) as _version
    from {{ source('raw_meta', 'ads_insights') }}
)
select
    "date" as date_day,
    case when account_id like 'act!_%' escape '!' then account_id else 'act_' || account_id end as account_id,
    campaign_id,
    adset_id,
    ad_id,
    upper(currency) as currency,
    coalesce(spend, 0)::numeric as spend,
    coalesce(impressions, 0)::bigint as impressions,
    coalesce(clicks, 0)::bigint as clicks,
    coalesce(reach, 0)::bigint as reach,
    coalesce(conversions, 0)::numeric as conversions,
    coalesce(purchase_value, 0)::numeric as purchase_value,
    loaded_at
from ranked
where _version = 1
