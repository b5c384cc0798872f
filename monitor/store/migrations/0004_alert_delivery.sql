-- Alert delivery (issue 12): rule events carry their alert's id, the outbox is keyed by
-- subscription name (config subscriptions need no row in alert_subscriptions) and keeps
-- the exact body it sends, attempts say how they ended, acknowledgements are kept.
ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS alert_id text;
ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS summary text;
ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS stale boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS alert_events_alert_id ON alert_events (alert_id) WHERE alert_id IS NOT NULL;

ALTER TABLE alert_outbox ALTER COLUMN event_id DROP NOT NULL;
ALTER TABLE alert_outbox ALTER COLUMN subscription_id DROP NOT NULL;
ALTER TABLE alert_outbox ADD COLUMN IF NOT EXISTS subscription text NOT NULL DEFAULT '';
ALTER TABLE alert_outbox ADD COLUMN IF NOT EXISTS channel text NOT NULL DEFAULT '';
ALTER TABLE alert_outbox ADD COLUMN IF NOT EXISTS target text NOT NULL DEFAULT '';
ALTER TABLE alert_outbox ADD COLUMN IF NOT EXISTS alert_id text NOT NULL DEFAULT '';
ALTER TABLE alert_outbox ADD COLUMN IF NOT EXISTS notification_id text NOT NULL DEFAULT '';
ALTER TABLE alert_outbox ADD COLUMN IF NOT EXISTS created_ns bigint NOT NULL DEFAULT 0;
ALTER TABLE alert_outbox ADD COLUMN IF NOT EXISTS next_attempt_ns bigint NOT NULL DEFAULT 0;
ALTER TABLE alert_outbox ADD COLUMN IF NOT EXISTS last_error text;
CREATE INDEX IF NOT EXISTS alert_outbox_lane ON alert_outbox (subscription, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS alert_outbox_alert ON alert_outbox (alert_id);

ALTER TABLE alert_delivery_attempts ADD COLUMN IF NOT EXISTS number integer NOT NULL DEFAULT 0;
ALTER TABLE alert_delivery_attempts ADD COLUMN IF NOT EXISTS outcome text NOT NULL DEFAULT '';
ALTER TABLE alert_delivery_attempts ADD COLUMN IF NOT EXISTS elapsed_s float8;

CREATE TABLE IF NOT EXISTS alert_acks (
    alert_id   text        PRIMARY KEY,
    acked_by   text        NOT NULL,
    acked_at   timestamptz NOT NULL
);

-- Subscriptions added through the API or `liqmon subscriptions add`: the whole
-- subscription as the config writes it (secrets stay in the environment: secret_env).
ALTER TABLE alert_subscriptions ADD COLUMN IF NOT EXISTS spec jsonb;
