-- Property x local day: is the home available, booked by a guest, used by its owner or blocked?
-- Days are the region's calendar days (check-in / check-out dates are local), a stay occupying the
-- nights [checkin_date, checkout_date) -- so a stay across a month end counts in both months, and a
-- night belongs to the day it starts on. Cancelled and deleted reservations occupy nothing (cancelled
-- nights are counted for reference). Breezeway gives only a property's CURRENT status: an inactive home
-- is unavailable on every day. Each day is 0/1 per home; roll up with sums and take occupancy =
-- sum(nights_booked) / sum(nights_rentable) (never an average of the daily ratios).
-- Breezeway reservations carry no price, so there is no revenue or ADR here.
--
-- Built without joining ~3.7M property-days to ~230k stay-nights: a property's counts change only where a
-- stay starts or ends, so each property's calendar is cut into segments of constant counts (a running sum
-- of +1 at check-in, -1 at check-out) and each segment is expanded to its days once.
-- One row per (property_key, date_day): Postgres enforces it with a unique index built with the table.
{{ config(indexes=[{'columns': ['property_key', 'date_day'], 'unique': true}]) }}

with properties as (
    select property_key, region_code, property_id, property_name, status, is_active, time_zone
    from {{ ref('dim_properties') }}
),

-- not materialized: read twice, it stays inlined (a materialized CTE keeps the plan from going parallel)
reservations as not materialized (
    select region_code, property_key, checkin_date, checkout_date, stay_kind, is_cancelled
    from {{ ref('stg_breezeway__reservations') }}
    where not is_deleted
      and checkin_date is not null
      and checkout_date > checkin_date
),

-- the calendar of a region: from its first check-in to its last night ([first_day, end_day))
bounds as (
    select region_code, min(checkin_date) as first_day, max(checkout_date) as end_day
    from reservations
    group by region_code
),

-- what each stay adds from its check-in night and removes at its check-out; every home of a region starts
-- a segment on the region's first day (a home without stays is one segment of zeros)
changes as (
    select r.property_key, e.day,
        e.sign * (r.stay_kind = 'guest' and not r.is_cancelled)::int as guest,
        e.sign * (r.stay_kind = 'owner' and not r.is_cancelled)::int as owner,
        e.sign * (r.stay_kind = 'block' and not r.is_cancelled)::int as block,
        e.sign * r.is_cancelled::int as cancelled
    from reservations as r
    cross join lateral (values (r.checkin_date, 1), (r.checkout_date, -1)) as e(day, sign)
    union all
    select p.property_key, b.first_day, 0, 0, 0, 0
    from properties as p
    join bounds as b on b.region_code = p.region_code
),

deltas as (
    select property_key, day, sum(guest)::int as guest, sum(owner)::int as owner, sum(block)::int as block,
        sum(cancelled)::int as cancelled
    from changes
    group by property_key, day
),

-- [start_day, next_day): nights covered by the same stays (the running sums); a segment that starts on the
-- region's end_day (the last check-out) has no nights
segments as (
    select
        p.*,
        d.day as start_day,
        lead(d.day, 1, b.end_day) over w as next_day,
        sum(d.guest) over w as guest_stays,
        sum(d.owner) over w as owner_stays,
        sum(d.block) over w as block_stays,
        sum(d.cancelled) over w as cancelled_stays,
        b.end_day
    from deltas as d
    join properties as p on p.property_key = d.property_key
    join bounds as b on b.region_code = p.region_code
    window w as (partition by d.property_key order by d.day)
),

flags as (
    select
        s.start_day + night as date_day,
        s.region_code,
        s.property_key,
        s.property_id,
        s.property_name,
        s.status as property_status,
        s.time_zone,
        s.is_active,
        s.guest_stays > 0 as is_booked,
        s.guest_stays = 0 and s.owner_stays > 0 as is_owner_night,
        s.guest_stays = 0 and s.owner_stays = 0 and s.block_stays > 0 as is_blocked,
        s.guest_stays + s.owner_stays + s.block_stays > 1 as is_double_booked,
        s.cancelled_stays
    from segments as s
    cross join lateral generate_series(0, s.next_day - s.start_day - 1) as night
    where s.start_day < s.end_day
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
