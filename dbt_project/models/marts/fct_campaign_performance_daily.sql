{{
  config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='date_day',
    on_schema_change='append_new_columns',
    pre_hook="{{ delete_partition_window('date_day') }}",
    tags=['meta_daily'],
  )
}}
-- Campaign x day rollup of fct_ad_performance_daily. Ratios are recomputed from the summed totals
-- (never averaged across ads). Reach is not additive across ads: reach_sum is the sum of the ads'
-- reach, an upper bound of the campaign's unique reach.
with ads as (
    select * from {{ ref('fct_ad_performance_daily') }}
    where {{ incremental_window('date_day', var('meta_restatement_days')) }}
),

totals as (
    select
        date_day,
        account_id,
        campaign_id,
        currency,
        reporting_currency,
        count(*) as ads,
        sum(spend) as spend,
        sum(impressions) as impressions,
        sum(clicks) as clicks,
        sum(reach) as reach_sum,
        sum(conversions) as conversions,
        sum(purchase_value) as purchase_value,
        sum(spend_reporting) as spend_reporting,
        sum(purchase_value_reporting) as purchase_value_reporting,
        max(source_loaded_at) as source_loaded_at
    from ads
    group by date_day, account_id, campaign_id, currency, reporting_currency
)

select
    date_day,
    account_id,
    campaign_id,
    currency,
    ads,
    spend,
    impressions,
    clicks,
    reach_sum,
    conversions,
    purchase_value,
    {{ safe_divide('clicks', 'impressions') }} as ctr,
    {{ safe_divide('spend', 'clicks') }} as cpc,
    {{ safe_divide('spend * 1000', 'impressions') }} as cpm,
    {{ safe_divide('spend', 'conversions') }} as cpa,
    case when spend > 0 then purchase_value / spend end as roas,
    reporting_currency,
    spend_reporting,
    purchase_value_reporting,
    {{ safe_divide('spend_reporting', 'conversions') }} as cpa_reporting,
    source_loaded_at
from totals
