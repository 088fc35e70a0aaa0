-- A first-class `partial` sync status: the scope's data committed, but part of its children failed (e.g. a
-- Breezeway region whose tasks loaded for 38 of 40 properties). `error` names what is missing. It replaces the
-- former "success row plus an extra failed row". Checks treat it as not loaded ("all scopes loaded" fails),
-- the next Breezeway run of that scope is a full pass, and the step that wrote it failed.
ALTER TABLE ops.etl_sync_log DROP CONSTRAINT IF EXISTS etl_sync_log_status_check;
ALTER TABLE ops.etl_sync_log ADD CONSTRAINT etl_sync_log_status_check
    CHECK (status IN ('running', 'success', 'partial', 'failed'));

-- The runbooks know only running / success / failed, and look for problems with `sync_status IN ('failed', ...)`:
-- their views show a partial sync as 'failed' (it is not a success) and say `partial` in a column of its own.
CREATE OR REPLACE VIEW breezeway.etl_sync_log AS
SELECT l.id,
       l.scope             AS region_code,
       l.entity            AS entity_type,
       l.sync_type,
       CASE WHEN l.status = 'partial' THEN 'failed' ELSE l.status END AS sync_status,
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
       l.dagster_run_id,
       l.status = 'partial' AS partial
FROM ops.etl_sync_log l
WHERE l.source = 'breezeway';

CREATE OR REPLACE VIEW marketing.etl_sync_log AS
SELECT id,
       source              AS platform,
       scope               AS account_id,
       entity              AS entity_type,
       sync_type,
       CASE WHEN status = 'partial' THEN 'failed' ELSE status END AS status,
       window_start,
       window_end,
       started_at          AS start_time,
       finished_at         AS end_time,
       records_processed,
       api_calls,
       error               AS error_message,
       dagster_run_id,
       status = 'partial'  AS partial
FROM ops.etl_sync_log
WHERE source IN ('meta', 'ga4');
