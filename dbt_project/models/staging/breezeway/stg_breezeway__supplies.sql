-- The supply catalogue per region, with stock levels; deleted items kept for audit (is_deleted).
select
    region_code || ':' || id as supply_key,
    region_code,
    id as supply_id,
    company_id,
    name as supply_name,
    size,
    unit_cost,
    upper(currency) as currency,
    stock_count,
    low_stock_alert,
    lower(stock_status) as stock_status,
    stock_count is not null and low_stock_alert is not null and stock_count <= low_stock_alert as is_low_stock,
    created_at,
    updated_at,
    deleted_at,
    deleted_at is not null as is_deleted,
    loaded_at
from {{ source('raw_breezeway', 'supplies') }}
