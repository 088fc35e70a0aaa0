-- GA4 landing tables (one per report declared in adpipeline/sources/ga4/reports.py, same shape) and the
-- per-pull report metadata (GA4 metadata + property quota) that the GA4 checks read.
-- report_date is the property's calendar day a run replaces; `date` is GA4's own date, NULL when GA4 sent
-- "(other)" (cardinality limit), with the raw value in date_raw and is_other set.
CREATE SCHEMA IF NOT EXISTS raw_ga4;

CREATE TABLE IF NOT EXISTS raw_ga4.traffic_acquisition (
    "property_id" text NOT NULL,
    "report_date" date NOT NULL,
    "date" date,
    "date_raw" text NOT NULL,
    "session_source" text NOT NULL,
    "session_medium" text NOT NULL,
    "session_campaign_name" text NOT NULL,
    "session_default_channel_group" text NOT NULL,
    "is_other" boolean,
    "sessions" bigint,
    "total_users" bigint,
    "new_users" bigint,
    "engaged_sessions" bigint,
    "user_engagement_duration_seconds" numeric,
    "key_events" numeric,
    "purchase_revenue" numeric(18,6),
    "currency" text,
    payload jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("property_id", "report_date", "date_raw", "session_source", "session_medium",
                 "session_campaign_name", "session_default_channel_group")
);

CREATE TABLE IF NOT EXISTS raw_ga4.landing_page_events (
    "property_id" text NOT NULL,
    "report_date" date NOT NULL,
    "date" date,
    "date_raw" text NOT NULL,
    "landing_page" text NOT NULL,
    "event_name" text NOT NULL,
    "is_other" boolean,
    "sessions" bigint,
    "total_users" bigint,
    "event_count" bigint,
    "key_events" numeric,
    "purchase_revenue" numeric(18,6),
    "currency" text,
    payload jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("property_id", "report_date", "date_raw", "landing_page", "event_name")
);

CREATE TABLE IF NOT EXISTS raw_ga4.report_metadata (
    "report" text NOT NULL,
    "property_id" text NOT NULL,
    "report_date" date NOT NULL,
    "observed_at" timestamptz,
    "row_count" bigint,
    "other_rows" bigint,
    "other_share" numeric,
    "data_loss_from_other_row" boolean,
    "subject_to_thresholding" boolean,
    "empty_reason" text,
    "currency" text,
    "time_zone" text,
    "tokens_per_day_consumed" bigint,
    "tokens_per_day_remaining" bigint,
    "tokens_per_hour_consumed" bigint,
    "tokens_per_hour_remaining" bigint,
    payload jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("report", "property_id", "report_date")
);
CREATE INDEX IF NOT EXISTS report_metadata_latest ON raw_ga4.report_metadata (property_id, observed_at DESC);
