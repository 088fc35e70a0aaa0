-- Breezeway property ids are unique within a region only: property_key = '<region_code>:<id>'.
-- Every landed row is kept here, deleted ones too (is_deleted, for audit); dims and facts drop them.
select
    region_code || ':' || id as property_key,
    region_code,
    id as property_id,
    company_id,
    name as property_name,
    lower(status) as status,
    address1 as address,
    city,
    state,
    zipcode,
    country,
    latitude,
    longitude,
    timezone as time_zone,
    reference_property_id,
    reference_external_property_id,
    deleted_at,
    deleted_at is not null as is_deleted,
    loaded_at
from {{ source('raw_breezeway', 'properties') }}
