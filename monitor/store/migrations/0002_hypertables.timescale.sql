-- liqmon: no-transaction
-- TimescaleDB: the sample tables become hypertables (1-day chunks), compressed by book
-- or asset, with 1-minute and 1-hour continuous aggregates of the book metrics.
-- Compression and retention ages are policies set at every start (see migrate.py).
SELECT create_hypertable('book_metrics', by_range('ts', INTERVAL '1 day'), if_not_exists => true, migrate_data => true);
SELECT create_hypertable('asset_metrics', by_range('ts', INTERVAL '1 day'), if_not_exists => true, migrate_data => true);
SELECT create_hypertable('fx_rates', by_range('ts', INTERVAL '7 days'), if_not_exists => true, migrate_data => true);
SELECT create_hypertable('score_samples', by_range('ts', INTERVAL '1 day'), if_not_exists => true, migrate_data => true);
SELECT create_hypertable('venue_health', by_range('ts', INTERVAL '7 days'), if_not_exists => true, migrate_data => true);
SELECT create_hypertable('book_snapshots', by_range('ts', INTERVAL '1 day'), if_not_exists => true, migrate_data => true);
ALTER TABLE book_metrics SET (timescaledb.compress, timescaledb.compress_segmentby = 'venue, symbol', timescaledb.compress_orderby = 'ts');
ALTER TABLE asset_metrics SET (timescaledb.compress, timescaledb.compress_segmentby = 'asset', timescaledb.compress_orderby = 'ts');
ALTER TABLE fx_rates SET (timescaledb.compress, timescaledb.compress_segmentby = 'currency', timescaledb.compress_orderby = 'ts');
ALTER TABLE score_samples SET (timescaledb.compress, timescaledb.compress_segmentby = 'scope, venue, symbol, asset', timescaledb.compress_orderby = 'ts');
ALTER TABLE book_snapshots SET (timescaledb.compress, timescaledb.compress_segmentby = 'venue, symbol', timescaledb.compress_orderby = 'ts');
CREATE MATERIALIZED VIEW IF NOT EXISTS book_metrics_1m WITH (timescaledb.continuous) AS
SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket, venue, symbol, base,
       count(*) AS samples, count(*) FILTER (WHERE valid) AS valid_samples,
       avg(mid) AS mid, avg(spread_bps) AS spread_bps, max(spread_bps) AS spread_bps_max,
       avg(depth_1pct_bid_usd) AS depth_1pct_bid_usd, avg(depth_1pct_ask_usd) AS depth_1pct_ask_usd,
       min(depth_1pct_bid_usd) AS depth_1pct_bid_usd_min, min(depth_1pct_ask_usd) AS depth_1pct_ask_usd_min
FROM book_metrics GROUP BY 1, 2, 3, 4 WITH NO DATA;
CREATE MATERIALIZED VIEW IF NOT EXISTS book_metrics_1h WITH (timescaledb.continuous) AS
SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket, venue, symbol, base,
       count(*) AS samples, count(*) FILTER (WHERE valid) AS valid_samples,
       avg(mid) AS mid, avg(spread_bps) AS spread_bps, max(spread_bps) AS spread_bps_max,
       avg(depth_1pct_bid_usd) AS depth_1pct_bid_usd, avg(depth_1pct_ask_usd) AS depth_1pct_ask_usd,
       min(depth_1pct_bid_usd) AS depth_1pct_bid_usd_min, min(depth_1pct_ask_usd) AS depth_1pct_ask_usd_min
FROM book_metrics GROUP BY 1, 2, 3, 4 WITH NO DATA;
SELECT add_continuous_aggregate_policy('book_metrics_1m', start_offset => INTERVAL '1 hour', end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute', if_not_exists => true);
SELECT add_continuous_aggregate_policy('book_metrics_1h', start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour', if_not_exists => true);
CREATE INDEX IF NOT EXISTS alert_events_ts ON alert_events (ts);
