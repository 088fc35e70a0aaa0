#!/bin/sh
# First start of the postgres service only (an empty data volume): the warehouse database beside `dagster`.
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname dagster -c "CREATE DATABASE warehouse"
