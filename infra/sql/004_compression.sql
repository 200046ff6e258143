-- requires-license: timescale
-- Native compression of old chunks (Timescale License only; skipped on the Apache edition).
ALTER TABLE bars SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'symbol, timeframe',
    timescaledb.compress_orderby = 'ts'
);
SELECT add_compression_policy('bars', INTERVAL '90 days', if_not_exists => TRUE);
