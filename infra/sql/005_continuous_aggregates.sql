-- requires-license: timescale
-- Hourly and daily rollups of every finer series (Timescale License only). Real-time
-- aggregation is on, and the store refreshes the queried window before reading, so results
-- always equal a time_bucket query over bars.
CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT symbol,
       timeframe,
       time_bucket(INTERVAL '1 hour', ts) AS bucket,
       first(open, ts) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, ts) AS close,
       sum(volume) AS volume,
       max(ingested_at) AS ingested_at
FROM bars
GROUP BY symbol, timeframe, bucket
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT symbol,
       timeframe,
       time_bucket(INTERVAL '1 day', ts) AS bucket,
       first(open, ts) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, ts) AS close,
       sum(volume) AS volume,
       max(ingested_at) AS ingested_at
FROM bars
GROUP BY symbol, timeframe, bucket
WITH NO DATA;

SELECT add_continuous_aggregate_policy('bars_1h',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);
SELECT add_continuous_aggregate_policy('bars_1d',
    start_offset => INTERVAL '30 days', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 hour', if_not_exists => TRUE);
