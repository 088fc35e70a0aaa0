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
