-- Alert delivery: what an alert tells people (action, link), when it last told them, and an outbox of
-- messages per sink with their delivery state, so a dead sink is retried and never blocks the others.
ALTER TABLE ops.alerts
    ADD COLUMN IF NOT EXISTS action           text,
    ADD COLUMN IF NOT EXISTS link             text,
    ADD COLUMN IF NOT EXISTS last_notified_at timestamptz,
    ADD COLUMN IF NOT EXISTS notify_count     integer NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS ops.alert_deliveries (
    id               bigserial   PRIMARY KEY,
    alert_id         bigint      REFERENCES ops.alerts (id) ON DELETE SET NULL,
    sink             text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('opened', 'reminder', 'resolved')),
    message          jsonb       NOT NULL,  -- rendered from redacted fields: never a secret
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_error       text,
    created_at       timestamptz NOT NULL,
    delivered_at     timestamptz,
    delivered_as     text        -- 'message' or 'summary'
);
CREATE INDEX IF NOT EXISTS alert_deliveries_pending
    ON ops.alert_deliveries (sink, next_attempt_at) WHERE status = 'pending';

-- Before this migration a run failure opened one alert per run (dedupe_key 'run:<run id>') that nothing ever
-- resolved; now it is one per job ('run_failure:<job>'), resolved by the job's next success. Close the old
-- ones, and count reminders of what is open from now on, so upgrading sends no burst of stale reminders.
UPDATE ops.alerts SET resolved_at = now()
 WHERE signal = 'run_failure' AND dedupe_key LIKE 'run:%' AND resolved_at IS NULL;
UPDATE ops.alerts SET last_notified_at = now() WHERE resolved_at IS NULL AND last_notified_at IS NULL;
