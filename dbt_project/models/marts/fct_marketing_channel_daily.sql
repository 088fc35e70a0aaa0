-- Day x campaign: Meta spend, clicks and conversions beside the GA4 sessions, key events and revenue
-- of the same campaign, joined through seeds/campaign_mapping.csv ((GA4 property, utm_campaign) ->
-- Meta campaign id; several UTM values may map to one campaign). Nothing is dropped:
--   matched             a Meta campaign that has a mapping (its GA4 numbers may be 0 on a day)
--   unmatched_spend     a Meta campaign without a mapping: its spend has no sessions to compare with
--   unmatched_sessions  GA4 Paid Social traffic whose (property, utm_campaign) is in no mapping
-- Days are each source's own calendar day (the ad account's and the GA4 property's time zones; map an
-- account to a property in the same zone). Money is in the reporting currency (var reporting_currency),
-- Meta spend also in its native currency.
with mapping as (
    select distinct ga4_property_id, utm_campaign, meta_campaign_id
    from {{ ref('campaign_mapping') }}
),

meta as (
    select date_day, campaign_id, account_id, currency, spend, spend_reporting, impressions, clicks, conversions,
           purchase_value_reporting
    from {{ ref('fct_campaign_performance_daily') }}
),

ga4 as (
    select
        date_day,
        property_id,
        campaign_name,
        channel_group = 'Paid Social' as is_paid_social,
        sum(sessions) as sessions,
        sum(key_events) as key_events,
        sum(purchase_revenue_reporting) as revenue_reporting
    from {{ ref('fct_web_traffic_daily') }}
    group by date_day, property_id, campaign_name, channel_group = 'Paid Social'
),

ga4_mapped as (
    select
        g.date_day,
        m.meta_campaign_id,
        string_agg(distinct g.property_id || ':' || g.campaign_name, ', ') as utm_campaigns,
        sum(g.sessions) as sessions,
        sum(g.key_events) as key_events,
        sum(g.revenue_reporting) as revenue_reporting
    from ga4 as g
    join mapping as m on m.ga4_property_id = g.property_id and m.utm_campaign = g.campaign_name
    group by g.date_day, m.meta_campaign_id
),

meta_side as (
    select
        coalesce(mt.date_day, gm.date_day) as date_day,
        'meta:' || coalesce(mt.campaign_id, gm.meta_campaign_id) as campaign_key,
        case when gm.meta_campaign_id is not null
                  or exists (select 1 from mapping as m where m.meta_campaign_id = mt.campaign_id)
             then 'matched' else 'unmatched_spend' end as match_status,
        coalesce(mt.campaign_id, gm.meta_campaign_id) as meta_campaign_id,
        mt.account_id as meta_account_id,
        cast(null as text) as ga4_property_id,
        gm.utm_campaigns,
        mt.currency,
        coalesce(mt.spend, 0) as spend,
        coalesce(mt.spend_reporting, 0) as spend_reporting,
        coalesce(mt.impressions, 0) as impressions,
        coalesce(mt.clicks, 0) as clicks,
        coalesce(mt.conversions, 0) as meta_conversions,
        coalesce(mt.purchase_value_reporting, 0) as meta_purchase_value_reporting,
        coalesce(gm.sessions, 0) as sessions,
        coalesce(gm.key_events, 0) as ga4_key_events,
        coalesce(gm.revenue_reporting, 0) as ga4_revenue_reporting
    from meta as mt
    full outer join ga4_mapped as gm on gm.date_day = mt.date_day and gm.meta_campaign_id = mt.campaign_id
),

ga4_unmatched as (
    select
        g.date_day,
        'ga4:' || g.property_id || ':' || g.campaign_name as campaign_key,
        'unmatched_sessions' as match_status,
        cast(null as text) as meta_campaign_id,
        cast(null as text) as meta_account_id,
        g.property_id as ga4_property_id,
        g.campaign_name as utm_campaigns,
        cast(null as text) as currency,
        0 as spend,
        0 as spend_reporting,
        0 as impressions,
        0 as clicks,
        0 as meta_conversions,
        0 as meta_purchase_value_reporting,
        g.sessions,
        g.key_events as ga4_key_events,
        g.revenue_reporting as ga4_revenue_reporting
    from ga4 as g
    where g.is_paid_social
      and not exists (select 1 from mapping as m where m.ga4_property_id = g.property_id and m.utm_campaign = g.campaign_name)
),

combined as (
    select * from meta_side
    union all
    select * from ga4_unmatched
)

select
    c.date_day,
    c.campaign_key,
    c.match_status,
    c.meta_campaign_id,
    dc.campaign_name as meta_campaign_name,
    coalesce(c.meta_account_id, dc.account_id) as meta_account_id,
    c.ga4_property_id,
    c.utm_campaigns,
    c.currency,
    c.spend,
    upper('{{ var("reporting_currency") }}') as reporting_currency,
    c.spend_reporting,
    c.impressions,
    c.clicks,
    c.meta_conversions,
    c.meta_purchase_value_reporting,
    c.sessions,
    c.ga4_key_events,
    c.ga4_revenue_reporting,
    {{ safe_divide('c.spend_reporting', 'c.sessions') }} as cost_per_session_reporting,
    {{ safe_divide('c.sessions', 'c.clicks') }} as sessions_per_click,
    case when c.spend_reporting > 0 then c.ga4_revenue_reporting / c.spend_reporting end as ga4_roas
from combined as c
left join {{ ref('dim_campaigns') }} as dc on dc.campaign_id = c.meta_campaign_id
