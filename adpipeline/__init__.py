"""adpipeline: Meta Marketing, Breezeway and GA4 into Postgres, dbt on top, watched by checks."""

__version__ = "0.1.0"
