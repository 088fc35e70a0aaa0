-- A first-class `partial` sync status: the scope's data committed, but part of its children failed (e.g. a
-- Breezeway region whose tasks loaded for 38 of 40 properties). `error` names what is missing. It replaces the
-- former "success row plus an extra failed row". Checks treat it as not loaded ("all scopes loaded" fails),
-- the next Breezeway run of that scope is a full pass, and the step that wrote it failed.
ALTER TABLE ops.etl_sync_log DROP CONSTRAINT IF EXISTS etl_sync_log_status_check;
ALTER TABLE ops.etl_sync_log ADD CONSTRAINT etl_sync_log_status_check
    CHECK (status IN ('running', 'success', 'partial', 'failed'));
