{{ config(tags=['ga4_daily']) }}
-- One row per property, day, landing page and event name, as GA4 reported it. Like the traffic report,
-- `date_day` is the pull's report_date (GA4 sends `(other)` instead of the date on folded rows), and
-- `(other)` rows are kept and flagged.
select
    property_id,
    report_date as date_day,
    coalesce(is_other, false) or '(other)' in (date_raw, landing_page, event_name) as is_other,
    landing_page,
    event_name,
    coalesce(sessions, 0)::bigint as sessions,
    coalesce(total_users, 0)::bigint as total_users,
    coalesce(event_count, 0)::bigint as event_count,
    coalesce(key_events, 0)::numeric as key_events,
    coalesce(purchase_revenue, 0)::numeric as purchase_revenue,
    upper(currency) as currency,
    loaded_at
from {{ source('raw_ga4', 'landing_page_events') }}
