-- Breezeway II: tasks with their children (assignments, supplies, costs), people, supplies, task tags;
-- deletions detected by full reconciliation are marked in deleted_at (rows are never dropped).
-- Shapes match adpipeline.sources.breezeway.tables (Table.create_sql()); a test compares them.
ALTER TABLE raw_breezeway.properties ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
ALTER TABLE raw_breezeway.reservations ADD COLUMN IF NOT EXISTS deleted_at timestamptz;

-- created_at/started_at/finished_at come NAIVE from the API and are read in the region's zone;
-- money is parsed from strings like "120.00 USD" into numeric + currency.
CREATE TABLE IF NOT EXISTS raw_breezeway.tasks (
    "region_code" text NOT NULL,
    "id" bigint NOT NULL,
    "property_id" bigint,
    "name" text,
    "department" text,
    "status_code" text,
    "status_stage" text,
    "priority" text,
    "scheduled_date" date,
    "template_id" bigint,
    "reservation_id" bigint,
    "external_reservation_id" text,
    "rate_paid" numeric(14,2),
    "rate_paid_currency" text,
    "costs_total" numeric(14,2),
    "supplies_total" numeric(14,2),
    "currency" text,
    "assignee_count" integer,
    "tags" jsonb,
    "paused" boolean,
    "report_url" text,
    "timezone" text,
    "created_at" timestamptz,
    "updated_at" timestamptz,
    "started_at" timestamptz,
    "finished_at" timestamptz,
    "deleted_at" timestamptz,
    payload jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("region_code", "id")
);

-- a task's children are replaced together with the task
CREATE TABLE IF NOT EXISTS raw_breezeway.task_assignments (
    "region_code" text NOT NULL,
    "task_id" bigint NOT NULL,
    "assignee_id" bigint NOT NULL,
    "assignment_id" bigint,
    "assignee_name" text,
    "status" text,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("region_code", "task_id", "assignee_id")
);

CREATE TABLE IF NOT EXISTS raw_breezeway.task_supplies (
    "region_code" text NOT NULL,
    "task_id" bigint NOT NULL,
    "supply_id" bigint NOT NULL,
    "name" text,
    "quantity" numeric(14,3),
    "unit_cost" numeric(14,4),
    "total_cost" numeric(14,2),
    "currency" text,
    "billable" boolean,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("region_code", "task_id", "supply_id")
);

CREATE TABLE IF NOT EXISTS raw_breezeway.task_costs (
    "region_code" text NOT NULL,
    "task_id" bigint NOT NULL,
    "cost_id" bigint NOT NULL,
    "cost_type" text,
    "description" text,
    "amount" numeric(14,2),
    "currency" text,
    "billable" boolean,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("region_code", "task_id", "cost_id")
);

CREATE TABLE IF NOT EXISTS raw_breezeway.people (
    "region_code" text NOT NULL,
    "id" bigint NOT NULL,
    "name" text,
    "status" text,
    "active" boolean,
    "accept_decline_tasks" boolean,
    "availability" jsonb,
    "deleted_at" timestamptz,
    payload jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("region_code", "id")
);

CREATE TABLE IF NOT EXISTS raw_breezeway.supplies (
    "region_code" text NOT NULL,
    "id" bigint NOT NULL,
    "company_id" bigint,
    "name" text,
    "size" text,
    "unit_cost" numeric(14,4),
    "currency" text,
    "stock_count" numeric(14,3),
    "low_stock_alert" numeric(14,3),
    "stock_status" text,
    "created_at" timestamptz,
    "updated_at" timestamptz,
    "deleted_at" timestamptz,
    payload jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("region_code", "id")
);

CREATE TABLE IF NOT EXISTS raw_breezeway.tags (
    "region_code" text NOT NULL,
    "id" bigint NOT NULL,
    "name" text,
    "description" text,
    "deleted_at" timestamptz,
    payload jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("region_code", "id")
);

CREATE INDEX IF NOT EXISTS tasks_region_updated ON raw_breezeway.tasks (region_code, updated_at);
CREATE INDEX IF NOT EXISTS tasks_region_property ON raw_breezeway.tasks (region_code, property_id);
CREATE INDEX IF NOT EXISTS tasks_region_reservation ON raw_breezeway.tasks (region_code, reservation_id)
    WHERE reservation_id IS NOT NULL;
