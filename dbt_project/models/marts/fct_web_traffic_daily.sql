{{
  config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='date_day',
    on_schema_change='append_new_columns',
    pre_hook="{{ delete_partition_window('date_day') }}",
    tags=['ga4_daily'],
  )
}}
-- Property x day x channel group / source / medium / campaign. Rows GA4 folded into `(other)` are
-- excluded here (their dimensions are unknown) and counted in fct_web_traffic_other_daily.
with traffic as (
    select * from {{ ref('stg_ga4__traffic_acquisition') }}
    where not is_other
      and {{ incremental_window('date_day', var('ga4_restatement_days')) }}
),

totals as (
    select
        date_day,
        property_id,
        channel_group,
        source,
        medium,
        campaign_name,
        max(currency) as currency,
        sum(sessions) as sessions,
        sum(total_users) as total_users,
        sum(new_users) as new_users,
        sum(engaged_sessions) as engaged_sessions,
        sum(engagement_seconds) as engagement_seconds,
        sum(key_events) as key_events,
        sum(purchase_revenue) as purchase_revenue,
        max(loaded_at) as source_loaded_at
    from traffic
    group by date_day, property_id, channel_group, source, medium, campaign_name
)

select
    t.date_day,
    t.property_id,
    t.channel_group,
    t.source,
    t.medium,
    t.campaign_name,
    t.sessions,
    t.total_users,
    t.new_users,
    t.engaged_sessions,
    {{ safe_divide('t.engaged_sessions', 't.sessions') }} as engagement_rate,
    t.engagement_seconds,
    t.key_events,
    {{ safe_divide('t.key_events', 't.sessions') }} as key_events_per_session,
    t.currency,
    t.purchase_revenue,
    upper('{{ var("reporting_currency") }}') as reporting_currency,
    t.purchase_revenue * fx.rate as purchase_revenue_reporting,
    t.source_loaded_at
from totals as t
left join {{ ref('stg_fx_rates') }} as fx
    on fx.currency = t.currency
   and t.date_day >= fx.valid_from
   and t.date_day < fx.valid_to
