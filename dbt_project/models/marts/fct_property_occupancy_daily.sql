-- Property x local day: is the home available, booked by a guest, used by its owner or blocked?
-- Days are the region's calendar days (check-in / check-out dates are local), a stay occupying the
-- nights [checkin_date, checkout_date) -- so a stay across a month end counts in both months, and a
-- night belongs to the day it starts on. Cancelled and deleted reservations occupy nothing (cancelled
-- nights are counted for reference). Breezeway gives only a property's CURRENT status: an inactive home
-- is unavailable on every day. Each day is 0/1 per home; roll up with sums and take occupancy =
-- sum(nights_booked) / sum(nights_rentable) (never an average of the daily ratios).
-- Breezeway reservations carry no price, so there is no revenue or ADR here.
with properties as (
    select property_key, region_code, property_id, property_name, status, is_active, time_zone
    from {{ ref('dim_properties') }}
),

reservations as (
    select reservation_key, region_code, property_key, checkin_date, checkout_date, stay_kind, is_cancelled
    from {{ ref('stg_breezeway__reservations') }}
    where not is_deleted
      and checkin_date is not null
      and checkout_date > checkin_date
),

-- the calendar of a region: from its first check-in to its last night
calendar as (
    select region_code, day::date as date_day
    from (
        select region_code, min(checkin_date) as first_day, max(checkout_date) - 1 as last_day
        from reservations
        group by region_code
    ) as bounds
    cross join lateral generate_series(first_day, last_day, interval '1 day') as day
),

nights as (
    select r.property_key, night::date as date_day, r.stay_kind, r.is_cancelled
    from reservations as r
    cross join lateral generate_series(r.checkin_date, r.checkout_date - 1, interval '1 day') as night
),

per_night as (
    select
        property_key,
        date_day,
        count(*) filter (where stay_kind = 'guest' and not is_cancelled) as guest_stays,
        count(*) filter (where stay_kind = 'owner' and not is_cancelled) as owner_stays,
        count(*) filter (where stay_kind = 'block' and not is_cancelled) as block_stays,
        count(*) filter (where is_cancelled) as cancelled_stays
    from nights
    group by property_key, date_day
),

flags as (
    select
        c.date_day,
        p.region_code,
        p.property_key,
        p.property_id,
        p.property_name,
        p.status as property_status,
        p.time_zone,
        p.is_active,
        coalesce(n.guest_stays, 0) > 0 as is_booked,
        coalesce(n.guest_stays, 0) = 0 and coalesce(n.owner_stays, 0) > 0 as is_owner_night,
        coalesce(n.guest_stays, 0) = 0 and coalesce(n.owner_stays, 0) = 0 and coalesce(n.block_stays, 0) > 0
            as is_blocked,
        coalesce(n.guest_stays, 0) + coalesce(n.owner_stays, 0) + coalesce(n.block_stays, 0) > 1 as is_double_booked,
        coalesce(n.cancelled_stays, 0) as cancelled_stays
    from properties as p
    join calendar as c on c.region_code = p.region_code
    left join per_night as n on n.property_key = p.property_key and n.date_day = c.date_day
)

select
    date_day,
    region_code,
    property_key,
    property_id,
    property_name,
    property_status,
    time_zone,
    is_active::int as nights_available,
    (is_active and (is_owner_night or is_blocked))::int as nights_unrentable,
    (is_active and not is_owner_night and not is_blocked)::int as nights_rentable,
    (is_active and is_booked)::int as nights_booked,
    is_owner_night::int as nights_owner,
    is_blocked::int as nights_blocked,
    is_booked::int as nights_guest,
    is_double_booked,
    cancelled_stays,
    {{ safe_divide('(is_active and is_booked)::int', '(is_active and not is_owner_night and not is_blocked)::int') }}
        as occupancy
from flags
