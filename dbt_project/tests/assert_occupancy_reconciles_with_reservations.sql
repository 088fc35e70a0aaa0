{{ config(severity='error', meta={'dagster': {'ref': {'name': 'fct_property_occupancy_daily'}}}) }}
-- Guest nights in the occupancy fact = distinct (property, night) covered by a guest stay in staging.
with expected as (
    select r.property_key, count(distinct night::date) as guest_nights
    from {{ ref('stg_breezeway__reservations') }} as r
    join {{ ref('dim_properties') }} as p on p.property_key = r.property_key
    cross join lateral generate_series(r.checkin_date, r.checkout_date - 1, interval '1 day') as night
    where not r.is_deleted and not r.is_cancelled and r.stay_kind = 'guest' and r.checkout_date > r.checkin_date
    group by r.property_key
),
actual as (
    select property_key, sum(nights_guest) as guest_nights
    from {{ ref('fct_property_occupancy_daily') }}
    group by property_key
    having sum(nights_guest) > 0
)
select *
from expected full outer join actual using (property_key)
where expected.guest_nights is distinct from actual.guest_nights
