{#- Generic data tests of this project (no dbt packages: the project builds without network access). -#}

{#- Rows where `expression` is not true fail the test (NULL counts as not true). -#}
{% test expression_is_true(model, expression, column_name=none) %}
select * from {{ model }} where not coalesce(({{ expression }}), false)
{% endtest %}

{#- Rows with a negative value fail (NULL passes: pair with not_null where NULL is wrong too). -#}
{% test non_negative(model, column_name) %}
select * from {{ model }} where {{ column_name }} < 0
{% endtest %}

{#- The combination of columns identifies at most one row. -#}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{#- Several named assertions about each row, in ONE scan of the model (a test each would scan it once each).
    A failing row breaks at least one assertion (NULL counts as not true); it is returned with the names of the
    ones it breaks (`failed_assertions`), so the failure count is the number of rows that break any. -#}
{% test row_assertions(model, assertions) %}
select
    array_remove(array[
        {%- for name, expression in assertions.items() %}
        case when coalesce(({{ expression }}), false) then null else '{{ name }}' end{{ "," if not loop.last }}
        {%- endfor %}
    ], null) as failed_assertions,
    *
from {{ model }}
where not (
    {%- for name, expression in assertions.items() %}
    coalesce(({{ expression }}), false){{ " and" if not loop.last }}
    {%- endfor %}
)
{% endtest %}

{#- The columns are a unique key of the table, enforced by Postgres: a valid unique index on exactly these
    columns (the model's `indexes` config) exists, so no row breaking the key was ever written. It reads the
    catalog, not the table (a unique_combination test scans and groups every row). -#}
{% test unique_index(model, columns) %}
select '{{ model.schema }}.{{ model.identifier }} has no unique index on ({{ columns | join(", ") }})' as problem
where not exists (
    select
    from pg_index as i
    where i.indrelid = to_regclass('{{ adapter.quote(model.schema) }}.{{ adapter.quote(model.identifier) }}')
      and i.indisunique and i.indisvalid and i.indpred is null and i.indexprs is null
      and array(
            select a.attname::text
            from unnest(i.indkey::int2[]) with ordinality as k(attnum, position)
            join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = k.attnum
            order by k.position
          ) = array[{% for column in columns %}'{{ column }}'{{ ", " if not loop.last }}{% endfor %}]::text[]
)
{% endtest %}
