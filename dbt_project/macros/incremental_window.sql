{#-
  Which days an incremental fact (re)builds, as a predicate on its date column:

    * a Dagster partition run passes its window in the environment (ADPIPELINE_DBT_START_DATE /
      ADPIPELINE_DBT_END_DATE; by hand: vars start_date / end_date; ISO dates, end exclusive): exactly
      [start, end) -- so a backfill of a date range rebuilds exactly those days. It is read at execution
      only: dbt records what parsing reads, and a window recorded there would re-parse every run;
    * otherwise, when the table exists: the trailing restatement window, i.e. from `restatement_days`
      before the newest day already built (Meta restates 28 days, GA4 3) -- everything newer included;
    * otherwise (first build, --full-refresh): every day.

  The models are `delete+insert` on their date column, and `delete_partition_window` (a pre-hook)
  empties the partition window first, so a day whose rows all vanished upstream is emptied too.
-#}

{% macro partition_window() -%}
  {%- if not execute -%}
    {{ return(none) }}
  {%- endif -%}
  {%- set start = var('start_date', none) or env_var('ADPIPELINE_DBT_START_DATE', '') or none -%}
  {%- set end = var('end_date', none) or env_var('ADPIPELINE_DBT_END_DATE', '') or none -%}
  {%- if (start is none) != (end is none) -%}
    {{ exceptions.raise_compiler_error("pass both start_date and end_date (vars or ADPIPELINE_DBT_* variables), or neither") }}
  {%- endif -%}
  {%- if start is none -%}
    {{ return(none) }}
  {%- endif -%}
  {%- for value in [start, end] -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', value | string) -%}
      {{ exceptions.raise_compiler_error("vars start_date / end_date must be YYYY-MM-DD dates, got " ~ value) }}
    {%- endif -%}
  {%- endfor -%}
  {%- if (start | string) >= (end | string) -%}
    {{ exceptions.raise_compiler_error("start_date must be before end_date (end is exclusive): " ~ start ~ " / " ~ end) }}
  {%- endif -%}
  {{ return([start | string, end | string]) }}
{%- endmacro %}


{% macro incremental_window(date_column, restatement_days) -%}
  {%- set window = partition_window() -%}
  {%- if window is not none -%}
    ({{ date_column }} >= date '{{ window[0] }}' and {{ date_column }} < date '{{ window[1] }}')
  {%- elif is_incremental() -%}
    ({{ date_column }} >= (select coalesce(max({{ date_column }}), date '1900-01-01') from {{ this }}) - {{ restatement_days | int }})
  {%- else -%}
    true
  {%- endif -%}
{%- endmacro %}


{#- Pre-hook of the incremental facts: on a partition run, delete the window's rows before inserting. -#}
{% macro delete_partition_window(date_column) -%}
  {%- set window = partition_window() -%}
  {%- if window is not none and execute -%}
    {%- set existing = adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier) -%}
    {%- if existing is not none and not should_full_refresh() -%}
      delete from {{ this }} where {{ date_column }} >= date '{{ window[0] }}' and {{ date_column }} < date '{{ window[1] }}'
    {%- endif -%}
  {%- endif -%}
{%- endmacro %}


{#- a / b, NULL when b is 0 or NULL (no division-by-zero, no fake zeros) -#}
{% macro safe_divide(numerator, denominator) -%}
  ({{ numerator }})::numeric / nullif(({{ denominator }})::numeric, 0)
{%- endmacro %}
