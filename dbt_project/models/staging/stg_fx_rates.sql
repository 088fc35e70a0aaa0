-- FX rates with their validity interval [valid_from, valid_to), plus the identity rate of the
-- reporting currency itself (so it never needs a seed row).
with rates as (
    select
        upper(currency) as currency,
        upper(reporting_currency) as reporting_currency,
        valid_from,
        rate::numeric as rate
    from {{ ref('fx_rates') }}
    where upper(reporting_currency) = upper('{{ var("reporting_currency") }}')
      and upper(currency) <> upper('{{ var("reporting_currency") }}')
    union all
    select
        upper('{{ var("reporting_currency") }}'),
        upper('{{ var("reporting_currency") }}'),
        date '0001-01-01',
        1::numeric
)
select
    currency,
    reporting_currency,
    valid_from,
    coalesce(
        lead(valid_from) over (partition by currency order by valid_from),
        date '9999-12-31'
    ) as valid_to,
    rate
from rates
