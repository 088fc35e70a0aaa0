-- Who a task is assigned to (replaced with its task on every load).
select
    region_code || ':' || task_id as task_key,
    region_code,
    task_id,
    region_code || ':' || assignee_id as person_key,
    assignee_id,
    assignment_id,
    assignee_name,
    lower(status) as status,
    loaded_at
-- loaded by breezeway/tasks with its task: read beside that source (one dbt source per Dagster asset)
{%- set tasks = source('raw_breezeway', 'tasks') %}
from {{ tasks.incorporate(path={'identifier': 'task_assignments'}) }}
