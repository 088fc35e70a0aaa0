-- Breezeway properties (one row per region and property id) with their reservation counts. Properties
-- deleted upstream are not here (they are in staging.stg_breezeway__properties with is_deleted, for
-- audit), and neither are deleted reservations in the counts.
with reservations as (
    select
        property_key,
        count(*) as reservations,
        count(*) filter (where not is_cancelled) as reservations_not_cancelled,
        min(checkin_date) as first_checkin_date,
        max(checkin_date) as last_checkin_date
    from {{ ref('stg_breezeway__reservations') }}
    where not is_deleted
    group by property_key
)

select
    p.property_key,
    p.region_code,
    p.property_id,
    p.property_name,
    p.status,
    p.status = 'active' as is_active,
    p.address,
    p.city,
    p.state,
    p.zipcode,
    p.country,
    p.latitude,
    p.longitude,
    p.time_zone,
    p.reference_property_id,
    p.reference_external_property_id,
    coalesce(r.reservations, 0) as reservations,
    coalesce(r.reservations_not_cancelled, 0) as reservations_not_cancelled,
    r.first_checkin_date,
    r.last_checkin_date
from {{ ref('stg_breezeway__properties') }} as p
left join reservations as r on r.property_key = p.property_key
where not p.is_deleted
