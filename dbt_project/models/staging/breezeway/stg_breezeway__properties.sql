-- Breezeway property ids are unique within a region only: property_key = '<region_code>:<id>'.
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
    loaded_at
from {{ source('raw_breezeway', 'properties') }}
