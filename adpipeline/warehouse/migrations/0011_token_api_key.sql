-- The API a token was issued by is part of its key: the sandbox's token and production's coexist, and switching
-- META_GRAPH_URL (or BREEZEWAY_API_URL, GA4_DATA_API_URL) back and forth never replaces the other API's token.
-- '' marks a row stored before 0010 (API unknown): it is never handed out, only adopted by the API whose
-- environment still holds the very token that seeded it.
UPDATE ops.platform_tokens SET api = '' WHERE api IS NULL;
ALTER TABLE ops.platform_tokens ALTER COLUMN api SET DEFAULT '', ALTER COLUMN api SET NOT NULL;
ALTER TABLE ops.platform_tokens DROP CONSTRAINT platform_tokens_pkey;
ALTER TABLE ops.platform_tokens ADD PRIMARY KEY (platform, scope, api);

-- the runbook views now list one row per (scope, api): say which API each is for
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
       updated_at,
       api
FROM ops.platform_tokens
WHERE platform = 'breezeway';

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
       updated_at,
       api
FROM ops.platform_tokens;
