{{ config(severity='error', meta={'dagster': {'ref': {'name': 'fct_campaign_performance_daily'}}}) }}
-- The campaign rollup has exactly the spend, conversions and purchase value of the ad x day fact, per day.
with ads as (
    select date_day, sum(spend) as spend, sum(conversions) as conversions, sum(purchase_value) as purchase_value
    from {{ ref('fct_ad_performance_daily') }} group by date_day
),
campaigns as (
    select date_day, sum(spend) as spend, sum(conversions) as conversions, sum(purchase_value) as purchase_value
    from {{ ref('fct_campaign_performance_daily') }} group by date_day
)
select *
from ads full outer join campaigns using (date_day)
where ads.spend is distinct from campaigns.spend
   or ads.conversions is distinct from campaigns.conversions
   or ads.purchase_value is distinct from campaigns.purchase_value
