{{ config(severity='error', meta={'dagster': {'ref': {'name': 'fct_turnovers'}}}) }}
-- One turnover per stay that was neither cancelled nor deleted, and nothing else.
with expected as (
    select reservation_key
    from {{ ref('stg_breezeway__reservations') }}
    where not is_deleted and not is_cancelled and checkout_date is not null
)
select coalesce(e.reservation_key, t.reservation_key) as reservation_key
from expected as e
full outer join {{ ref('fct_turnovers') }} as t on t.reservation_key = e.reservation_key
where e.reservation_key is null or t.reservation_key is null
