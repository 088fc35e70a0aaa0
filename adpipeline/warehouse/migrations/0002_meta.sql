-- Meta landing tables (raw_meta): one per entity, natural primary keys, the API row kept as payload.
-- Mirrors adpipeline/sources/meta/tables.py (a test compares them). Timestamps are UTC timestamptz;
-- money and counts are numeric beside their currency; budgets stay in the currency's minor units.

CREATE TABLE IF NOT EXISTS raw_meta.ad_accounts (
    "id" text NOT NULL,
    "account_id" text,
    "name" text,
    "currency" text,
    "timezone_name" text,
    "account_status" integer,
    payload jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("id")
);

CREATE TABLE IF NOT EXISTS raw_meta.campaigns (
    "id" text NOT NULL,
    "account_id" text,
    "name" text,
    "objective" text,
    "status" text,
    "configured_status" text,
    "effective_status" text,
    "buying_type" text,
    "daily_budget_minor" numeric,
    "created_time" timestamptz,
    "updated_time" timestamptz,
    "start_time" timestamptz,
    "stop_time" timestamptz,
    payload jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("id")
);

CREATE TABLE IF NOT EXISTS raw_meta.adsets (
    "id" text NOT NULL,
    "account_id" text,
    "campaign_id" text,
    "name" text,
    "status" text,
    "configured_status" text,
    "effective_status" text,
    "daily_budget_minor" numeric,
    "billing_event" text,
    "optimization_goal" text,
    "created_time" timestamptz,
    "updated_time" timestamptz,
    "start_time" timestamptz,
    "end_time" timestamptz,
    payload jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("id")
);

CREATE TABLE IF NOT EXISTS raw_meta.ads (
    "id" text NOT NULL,
    "account_id" text,
    "campaign_id" text,
    "adset_id" text,
    "name" text,
    "status" text,
    "configured_status" text,
    "effective_status" text,
    "creative_id" text,
    "created_time" timestamptz,
    "updated_time" timestamptz,
    payload jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("id")
);

CREATE TABLE IF NOT EXISTS raw_meta.ads_insights (
    "account_id" text NOT NULL,
    "date" date NOT NULL,
    "ad_id" text NOT NULL,
    "adset_id" text,
    "campaign_id" text,
    "currency" text,
    "spend" numeric,
    "impressions" bigint,
    "clicks" bigint,
    "reach" bigint,
    "conversions" numeric,
    "conversions_1d_click" numeric,
    "conversions_7d_click" numeric,
    "conversions_28d_click" numeric,
    "conversions_1d_view" numeric,
    "purchase_value" numeric,
    "purchase_value_1d_click" numeric,
    "purchase_value_7d_click" numeric,
    "purchase_value_28d_click" numeric,
    "purchase_value_1d_view" numeric,
    payload jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("account_id", "date", "ad_id")
);

CREATE TABLE IF NOT EXISTS raw_meta.account_insights (
    "account_id" text NOT NULL,
    "date" date NOT NULL,
    "currency" text,
    "spend" numeric,
    "impressions" bigint,
    "clicks" bigint,
    "reach" bigint,
    "conversions" numeric,
    "conversions_1d_click" numeric,
    "conversions_7d_click" numeric,
    "conversions_28d_click" numeric,
    "conversions_1d_view" numeric,
    "purchase_value" numeric,
    "purchase_value_1d_click" numeric,
    "purchase_value_7d_click" numeric,
    "purchase_value_28d_click" numeric,
    "purchase_value_1d_view" numeric,
    payload jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("account_id", "date")
);

-- the hierarchy's incremental cursor: max(updated_time) per account
CREATE INDEX IF NOT EXISTS campaigns_account_updated ON raw_meta.campaigns (account_id, updated_time);
CREATE INDEX IF NOT EXISTS adsets_account_updated ON raw_meta.adsets (account_id, updated_time);
CREATE INDEX IF NOT EXISTS ads_account_updated ON raw_meta.ads (account_id, updated_time);

COMMENT ON TABLE raw_meta.ads_insights IS
    'Meta insights, level=ad, one row per ad and day in the ad account''s time zone. Each (account_id, date) '
    'is replaced as a whole on every pull, so rows Meta drops disappear. conversions* = the purchase action '
    'per attribution window; conversions / purchase_value = Meta''s default attribution (7d_click + 1d_view).';
COMMENT ON TABLE raw_meta.account_insights IS
    'Meta insights, level=account, per account and day: the totals ads_insights is reconciled against.';
