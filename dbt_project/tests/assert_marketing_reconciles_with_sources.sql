{{ config(severity='error', meta={'dagster': {'ref': {'name': 'fct_marketing_channel_daily'}}}) }}
-- Per day: spend = the Meta campaign fact's; sessions = GA4 Paid Social sessions plus every mapped
-- (property, utm_campaign)'s sessions. A row lost by the join shows up here.
with mapping as (
    select distinct ga4_property_id, utm_campaign from {{ ref('campaign_mapping') }}
),
meta as (
    select date_day, sum(spend) as spend from {{ ref('fct_campaign_performance_daily') }} group by date_day
),
ga4 as (
    select t.date_day, sum(t.sessions) as sessions
    from {{ ref('fct_web_traffic_daily') }} as t
    where t.channel_group = 'Paid Social'
       or exists (select 1 from mapping as m where m.ga4_property_id = t.property_id and m.utm_campaign = t.campaign_name)
    group by t.date_day
),
expected as (
    select coalesce(meta.date_day, ga4.date_day) as date_day, coalesce(meta.spend, 0) as spend,
           coalesce(ga4.sessions, 0) as sessions
    from meta full outer join ga4 on ga4.date_day = meta.date_day
),
actual as (
    select date_day, sum(spend) as spend, sum(sessions) as sessions
    from {{ ref('fct_marketing_channel_daily') }}
    group by date_day
)
select *
from expected full outer join actual using (date_day)
where expected.spend is distinct from actual.spend or expected.sessions is distinct from actual.sessions
