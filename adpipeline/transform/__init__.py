"""dbt on top of the landing tables, wired into Dagster (project, resources, assets, definitions)."""
