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
-- Property x day: how much of GA4's traffic report was folded into `(other)` (GA4's cardinality
-- limit) and is therefore missing from fct_web_traffic_daily. A high share means the daily fact's
-- breakdown is incomplete for that day (its totals are low by other_sessions).
select
    date_day,
    property_id,
    count(*) as report_rows,
    count(*) filter (where is_other) as other_rows,
    sum(sessions) as sessions_total,
    coalesce(sum(sessions) filter (where is_other), 0) as other_sessions,
    {{ safe_divide('coalesce(sum(sessions) filter (where is_other), 0)', 'sum(sessions)') }} as other_sessions_share,
    coalesce(sum(purchase_revenue) filter (where is_other), 0) as other_purchase_revenue,
    max(loaded_at) as source_loaded_at
from {{ ref('stg_ga4__traffic_acquisition') }}
where {{ incremental_window('date_day', var('ga4_restatement_days')) }}
group by date_day, property_id
