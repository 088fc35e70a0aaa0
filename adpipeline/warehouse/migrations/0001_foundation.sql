-- Foundation: landing schemas and the ops tables (sync log, token store, alerts).
CREATE SCHEMA IF NOT EXISTS raw_meta;
CREATE SCHEMA IF NOT EXISTS raw_breezeway;
CREATE SCHEMA IF NOT EXISTS raw_ga4;
CREATE SCHEMA IF NOT EXISTS ops;

-- One row per sync attempt of one (source, scope, entity, window).
CREATE TABLE IF NOT EXISTS ops.etl_sync_log (
    id                 bigserial PRIMARY KEY,
    source             text        NOT NULL,
    scope              text        NOT NULL,
    entity             text        NOT NULL,
    sync_type          text        NOT NULL CHECK (sync_type IN ('full', 'incremental', 'restatement')),
    status             text        NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    window_start       date,
    window_end         date,
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    records_processed  bigint      NOT NULL DEFAULT 0,
    records_inserted   bigint      NOT NULL DEFAULT 0,
    records_updated    bigint      NOT NULL DEFAULT 0,
    records_deleted    bigint      NOT NULL DEFAULT 0,
    api_calls          integer     NOT NULL DEFAULT 0,
    error              text,
    dagster_run_id     text,
    CHECK (status = 'running' OR finished_at IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS etl_sync_log_latest
    ON ops.etl_sync_log (source, entity, scope, started_at DESC);
CREATE INDEX IF NOT EXISTS etl_sync_log_running
    ON ops.etl_sync_log (source, entity, scope) WHERE status = 'running';

-- One row per (platform, scope) credential. Secrets are AES-GCM ciphertext; key_id names the key.
CREATE TABLE IF NOT EXISTS ops.platform_tokens (
    platform                 text        NOT NULL,
    scope                    text        NOT NULL,
    access_token_enc         bytea,
    refresh_token_enc        bytea,
    key_id                   text,
    token_type               text,
    expires_at               timestamptz,
    refresh_expires_at       timestamptz,
    data_access_expires_at   timestamptz,
    scopes                   text[],
    never_expires            boolean     NOT NULL DEFAULT false,
    env_fingerprint          text,
    status                   text        NOT NULL DEFAULT 'valid'
                             CHECK (status IN ('valid', 'refresh_failed', 'expired', 'invalid')),
    last_refreshed_at        timestamptz,
    last_refresh_attempt_at  timestamptz,
    last_refresh_succeeded   boolean,
    last_checked_at          timestamptz,  -- every run of the token job, even when nothing is refreshed
    refresh_count            integer     NOT NULL DEFAULT 0,
    generation_count         integer     NOT NULL DEFAULT 0,
    last_error               text,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, scope)
);

-- Alerts raised by sensors (deduplicated on dedupe_key while open).
CREATE TABLE IF NOT EXISTS ops.alerts (
    id           bigserial   PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    severity     text        NOT NULL CHECK (severity IN ('critical', 'warning', 'info')),
    source       text,
    scope        text,
    signal       text        NOT NULL,
    asset_key    text,
    title        text        NOT NULL,
    message      text        NOT NULL,
    dedupe_key   text        NOT NULL,
    dagster_run_id text,
    resolved_at  timestamptz
);
CREATE INDEX IF NOT EXISTS alerts_open ON ops.alerts (dedupe_key) WHERE resolved_at IS NULL;
