-- Breezeway landing tables (asset breezeway/<entity> -> raw_breezeway.<entity>); every table carries
-- region_code. Shapes match adpipeline.sources.breezeway.tables (Table.create_sql()); a test compares them.
CREATE SCHEMA IF NOT EXISTS raw_breezeway;

CREATE TABLE IF NOT EXISTS raw_breezeway.properties (
    "region_code" text NOT NULL,
    "id" bigint NOT NULL,
    "company_id" bigint,
    "name" text,
    "status" text,
    "address1" text,
    "city" text,
    "state" text,
    "zipcode" text,
    "country" text,
    "latitude" numeric(9,6),
    "longitude" numeric(9,6),
    "timezone" text,
    "reference_property_id" text,
    "reference_external_property_id" text,
    "reference_company_id" text,
    payload jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("region_code", "id")
);

-- Door access codes never land in clear (access_code_hash is a keyed HMAC); guests are only counted.
-- checkin_*/checkout_* date and time are local to `timezone`; checkin_at/checkout_at are UTC.
CREATE TABLE IF NOT EXISTS raw_breezeway.reservations (
    "region_code" text NOT NULL,
    "id" bigint NOT NULL,
    "property_id" bigint,
    "status" text,
    "checkin_date" date,
    "checkin_time" time,
    "checkout_date" date,
    "checkout_time" time,
    "timezone" text,
    "checkin_at" timestamptz,
    "checkout_at" timestamptz,
    "nights" integer,
    "guest_count" integer,
    "access_code_hash" text,
    "type_guest" text,
    "type_stay" text,
    "tags" jsonb,
    "reference_reservation_id" text,
    "reference_external_reservation_id" text,
    "reference_property_id" text,
    "created_at" timestamptz,
    "updated_at" timestamptz,
    payload jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ("region_code", "id")
);
-- the incremental cursor (max updated_at per region) and the property-known check
CREATE INDEX IF NOT EXISTS reservations_region_updated ON raw_breezeway.reservations (region_code, updated_at);
CREATE INDEX IF NOT EXISTS reservations_region_property ON raw_breezeway.reservations (region_code, property_id);
