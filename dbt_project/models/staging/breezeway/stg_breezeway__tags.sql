-- Task tags per region; deleted ones kept for audit (is_deleted).
select
    region_code || ':' || id as tag_key,
    region_code,
    id as tag_id,
    name as tag_name,
    description,
    deleted_at,
    deleted_at is not null as is_deleted,
    loaded_at
from {{ source('raw_breezeway', 'tags') }}
