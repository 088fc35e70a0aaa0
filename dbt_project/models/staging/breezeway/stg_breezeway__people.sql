-- Breezeway people (staff); contact details are never landed. Deleted ones kept for audit (is_deleted).
select
    region_code || ':' || id as person_key,
    region_code,
    id as person_id,
    name as person_name,
    lower(status) as status,
    coalesce(active, false) and deleted_at is null as is_active,
    accept_decline_tasks,
    availability,
    deleted_at,
    deleted_at is not null as is_deleted,
    loaded_at
from {{ source('raw_breezeway', 'people') }}
