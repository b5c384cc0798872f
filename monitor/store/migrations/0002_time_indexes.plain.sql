-- Plain PostgreSQL: BRIN indexes on time (rows arrive in time order, so a BRIN index is
-- tiny and prunes time ranges well); retention is done by the daemon.
CREATE INDEX IF NOT EXISTS book_metrics_ts_brin ON book_metrics USING brin (ts);
CREATE INDEX IF NOT EXISTS asset_metrics_ts_brin ON asset_metrics USING brin (ts);
CREATE INDEX IF NOT EXISTS fx_rates_ts_brin ON fx_rates USING brin (ts);
CREATE INDEX IF NOT EXISTS score_samples_ts_brin ON score_samples USING brin (ts);
CREATE INDEX IF NOT EXISTS venue_health_ts_brin ON venue_health USING brin (ts);
CREATE INDEX IF NOT EXISTS book_snapshots_ts_brin ON book_snapshots USING brin (ts);
CREATE INDEX IF NOT EXISTS alert_events_ts ON alert_events (ts);
