-- Runbook compatibility: the schemas, tables and columns the operators' runbooks query (../shared/seeds/*.md:
-- the Breezeway ETL runbook's `breezeway.*`, the Meta ETL guide's `marketing.*`), as read-only views over ops.*
-- and raw_breezeway.*, so every SELECT in them runs verbatim and means what the runbook means.
-- No secret is exposed: token views carry metadata only. tests/test_runbook_sql.py runs every runbook SELECT.
CREATE SCHEMA IF NOT EXISTS breezeway;
CREATE SCHEMA IF NOT EXISTS marketing;

-- breezeway.etl_sync_log: one row per Breezeway sync attempt (region, entity), the runbook's column names.
-- last_successful_sync_at is what the old sync tracker stored on each row: when this (region, entity) last
-- synced successfully, as of this attempt (its own finish for a success, else the latest success before it).
CREATE OR REPLACE VIEW breezeway.etl_sync_log AS
SELECT l.id,
       l.scope             AS region_code,
       l.entity            AS entity_type,
       l.sync_type,
       l.status            AS sync_status,
       l.started_at        AS sync_started_at,
       l.finished_at       AS sync_completed_at,
       CASE WHEN l.status = 'success' THEN l.finished_at
            ELSE (SELECT max(s.finished_at) FROM ops.etl_sync_log s
                  WHERE s.source = l.source AND s.entity = l.entity AND s.scope = l.scope
                    AND s.status = 'success' AND s.started_at <= l.started_at)
       END                 AS last_successful_sync_at,
       l.records_processed,
       l.records_inserted,
       l.records_updated,
       l.records_deleted,
       l.api_calls         AS api_calls_made,
       l.error             AS error_message,
       l.dagster_run_id
FROM ops.etl_sync_log l
WHERE l.source = 'breezeway';

-- breezeway.api_tokens: one row per region's token (no secrets). token_expires_at is the access JWT's own
-- expiry (24 h, renewed by the pipeline itself); last_error is the last failed refresh or authentication.
CREATE OR REPLACE VIEW breezeway.api_tokens AS
SELECT scope                   AS region_code,
       status                  AS token_status,
       expires_at              AS token_expires_at,
       refresh_expires_at      AS refresh_token_expires_at,
       last_refreshed_at,
       last_refresh_attempt_at,
       refresh_count           AS token_refresh_count,
       generation_count        AS token_generation_count,
       last_error,
       created_at,
       updated_at
FROM ops.platform_tokens
WHERE platform = 'breezeway';

-- breezeway.<entity>: the landed rows that exist upstream now (deletions found by the full reconciliation are
-- kept in raw_breezeway with deleted_at, and left out here); synced_at is the row's load time.
CREATE OR REPLACE VIEW breezeway.properties AS
SELECT t.*, t.loaded_at AS synced_at FROM raw_breezeway.properties t WHERE t.deleted_at IS NULL;
CREATE OR REPLACE VIEW breezeway.reservations AS
SELECT t.*, t.loaded_at AS synced_at FROM raw_breezeway.reservations t WHERE t.deleted_at IS NULL;
CREATE OR REPLACE VIEW breezeway.tasks AS
SELECT t.*, t.loaded_at AS synced_at FROM raw_breezeway.tasks t WHERE t.deleted_at IS NULL;
CREATE OR REPLACE VIEW breezeway.people AS
SELECT t.*, t.loaded_at AS synced_at FROM raw_breezeway.people t WHERE t.deleted_at IS NULL;
CREATE OR REPLACE VIEW breezeway.supplies AS
SELECT t.*, t.loaded_at AS synced_at FROM raw_breezeway.supplies t WHERE t.deleted_at IS NULL;
CREATE OR REPLACE VIEW breezeway.tags AS
SELECT t.*, t.loaded_at AS synced_at FROM raw_breezeway.tags t WHERE t.deleted_at IS NULL;

-- marketing.etl_sync_log: the marketing platforms' sync attempts (Meta, GA4), the Meta guide's column names.
CREATE OR REPLACE VIEW marketing.etl_sync_log AS
SELECT id,
       source              AS platform,
       scope               AS account_id,
       entity              AS entity_type,
       sync_type,
       status,
       window_start,
       window_end,
       started_at          AS start_time,
       finished_at         AS end_time,
       records_processed,
       api_calls,
       error               AS error_message,
       dagster_run_id
FROM ops.etl_sync_log
WHERE source IN ('meta', 'ga4');

-- marketing.platform_tokens: every stored token (no secrets), with expires_at meaning what the guide's status
-- query needs it to mean: the moment by which a PERSON must act, so that query's EXPIRED / EXPIRING_SOON
-- (< 7 days) / WARNING (< 14 days) / HEALTHY agrees with `adpipeline tokens status` and the thresholds table
-- (adpipeline/monitoring/thresholds.py, token_health):
--   * expired or invalid (re-authentication required): a past moment -> EXPIRED;
--   * Meta: the long-lived token's expiry (none for a system user), or the data-access expiry once that has passed;
--   * tokens the pipeline renews by itself (Breezeway's 24 h JWTs, GA4's 1 h OAuth tokens): nothing for a person to
--     renew -> NULL -> HEALTHY. Their real expiry is token_expires_at;
--   * a failing refresh while the token is still valid, or a Meta data-access expiry within 14 days: WARN in the
--     thresholds table, so at most 13 days out -> WARNING (or worse, if the token itself expires sooner).
CREATE OR REPLACE VIEW marketing.platform_tokens AS
SELECT platform,
       scope,
       CASE
           WHEN status IN ('expired', 'invalid') THEN LEAST(COALESCE(expires_at, updated_at), updated_at)
           ELSE LEAST(
               CASE WHEN platform = 'meta' AND NOT never_expires THEN expires_at END,
               CASE WHEN platform = 'meta' AND data_access_expires_at <= now() THEN data_access_expires_at END,
               CASE WHEN status = 'refresh_failed'
                      OR (platform = 'meta' AND data_access_expires_at < now() + interval '14 days')
                    THEN now() + interval '13 days' END)
       END                    AS expires_at,
       expires_at             AS token_expires_at,
       data_access_expires_at,
       never_expires,
       platform <> 'meta'     AS refreshed_automatically,
       status                 AS token_status,
       scopes,
       last_refreshed_at,
       last_checked_at,
       last_error,
       created_at,
       updated_at
FROM ops.platform_tokens;
