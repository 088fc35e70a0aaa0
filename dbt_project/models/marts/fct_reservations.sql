-- One row per reservation, cancelled ones kept and flagged (is_cancelled). Rebuilt in full each run:
-- any stay can change (updates, cancellations) at any time, so there is no restatement window to trust.
-- Reservations deleted upstream are left out (they stay in staging with is_deleted, for audit).
select
    r.reservation_key,
    r.region_code,
    r.reservation_id,
    r.property_key,
    r.property_id,
    p.property_key is not null as property_known,
    r.status,
    r.is_cancelled,
    r.checkin_date,
    r.checkout_date,
    r.checkin_at,
    r.checkout_at,
    r.nights,
    r.guest_count,
    r.type_guest,
    r.type_stay,
    r.stay_kind,
    r.created_at,
    r.created_date_local,
    r.checkin_date - r.created_date_local as lead_time_days,
    r.updated_at,
    r.time_zone,
    r.reference_reservation_id,
    r.loaded_at as source_loaded_at
from {{ ref('stg_breezeway__reservations') }} as r
left join {{ ref('dim_properties') }} as p on p.property_key = r.property_key
where not r.is_deleted
