-- The cross-venue fields metrics-out's "asset" lines carry beyond issue 9's contract, and
-- the previous state of a score event (alerts-out's "previous").
ALTER TABLE asset_metrics ADD COLUMN IF NOT EXISTS lowest jsonb;
ALTER TABLE asset_metrics ADD COLUMN IF NOT EXISTS index_deviation_bps float8;
ALTER TABLE asset_metrics ADD COLUMN IF NOT EXISTS peg_bps float8;
ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS previous text;
