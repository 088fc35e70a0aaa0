-- Timestamps are timestamptz (UTC instants); local dates are computed in the region's time zone.
-- Check-in / check-out dates are already local (the stay's calendar days), as Breezeway gives them.
-- Deleted reservations (gone upstream, deleted_at set by the full reconciliation) stay here for audit.
select
    region_code || ':' || id as reservation_key,
    region_code,
    id as reservation_id,
    region_code || ':' || property_id as property_key,
    property_id,
    lower(status) as status,
    lower(status) in ('cancelled', 'canceled') as is_cancelled,
    checkin_date,
    checkout_date,
    checkin_time,
    checkout_time,
    checkin_at,
    checkout_at,
    coalesce(nights, checkout_date - checkin_date) as nights,
    guest_count,
    type_guest,
    type_stay,
    -- owner stays and maintenance blocks occupy the home without being a guest booking
    case
        when type_stay = 'owner_stay' or type_guest = 'owner' then 'owner'
        when type_stay = 'maintenance_block' then 'block'
        else 'guest'
    end as stay_kind,
    created_at,
    updated_at,
    (created_at at time zone timezone)::date as created_date_local,
    (updated_at at time zone timezone)::date as updated_date_local,
    timezone as time_zone,
    reference_reservation_id,
    reference_external_reservation_id,
    deleted_at,
    deleted_at is not null as is_deleted,
    loaded_at
from {{ source('raw_breezeway', 'reservations') }}
