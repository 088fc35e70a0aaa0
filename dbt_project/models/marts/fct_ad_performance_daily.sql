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
-- Ad x day performance. Ratios are computed from this row's totals and are NULL when their
-- denominator is 0; ROAS = purchase value / spend (never conversions / spend).
with insights as (
    select * from {{ ref('stg_meta__ads_insights') }}
    where {{ incremental_window('date_day', var('meta_restatement_days')) }}
),

fx as (
    select * from {{ ref('stg_fx_rates') }}
)

select
    i.date_day,
    i.account_id,
    i.campaign_id,
    i.adset_id,
    i.ad_id,
    i.currency,
    i.spend,
    i.impressions,
    i.clicks,
    i.reach,
    i.conversions,
    i.purchase_value,
    {{ safe_divide('i.clicks', 'i.impressions') }} as ctr,
    {{ safe_divide('i.spend', 'i.clicks') }} as cpc,
    {{ safe_divide('i.spend * 1000', 'i.impressions') }} as cpm,
    {{ safe_divide('i.spend', 'i.conversions') }} as cpa,
    case when i.spend > 0 then i.purchase_value / i.spend end as roas,
    upper('{{ var("reporting_currency") }}') as reporting_currency,
    fx.rate as fx_rate,
    i.spend * fx.rate as spend_reporting,
    i.purchase_value * fx.rate as purchase_value_reporting,
    {{ safe_divide('i.spend', 'i.clicks') }} * fx.rate as cpc_reporting,
    {{ safe_divide('i.spend * 1000', 'i.impressions') }} * fx.rate as cpm_reporting,
    {{ safe_divide('i.spend', 'i.conversions') }} * fx.rate as cpa_reporting,
    i.loaded_at as source_loaded_at
from insights as i
left join fx
    on fx.currency = i.currency
   and i.date_day >= fx.valid_from
   and i.date_day < fx.valid_to
