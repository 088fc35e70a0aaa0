{{ config(tags=['ga4_daily']) }}
-- One row per property, day and session source / medium / campaign / default channel group, as GA4
-- reported it. `date_day` is the property's calendar day (the pull's report_date): GA4 sends `(other)`
-- instead of the date on rows it folded, so report_date is the only date every row has.
-- (other) rows are kept and flagged here; the daily fact excludes them and fct_web_traffic_other_daily
-- counts them.
select
    property_id,
    report_date as date_day,
    coalesce(is_other, false)
        or '(other)' in (date_raw, session_source, session_medium, session_campaign_name, session_default_channel_group)
        as is_other,
    session_default_channel_group as channel_group,
    session_source as source,
    session_medium as medium,
    session_campaign_name as campaign_name,
    coalesce(sessions, 0)::bigint as sessions,
    coalesce(total_users, 0)::bigint as total_users,
    coalesce(new_users, 0)::bigint as new_users,
    coalesce(engaged_sessions, 0)::bigint as engaged_sessions,
    coalesce(user_engagement_duration_seconds, 0)::numeric as engagement_seconds,
    coalesce(key_events, 0)::numeric as key_events,
    coalesce(purchase_revenue, 0)::numeric as purchase_revenue,
    upper(currency) as currency,
    loaded_at
from {{ source('raw_ga4', 'traffic_acquisition') }}
