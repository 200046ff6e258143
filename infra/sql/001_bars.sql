-- Canonical bars, one row per (symbol, timeframe, ts); ts is the bar's open time.
CREATE TABLE IF NOT EXISTS bars (
    symbol      text             NOT NULL,
    timeframe   text             NOT NULL,
    ts          timestamptz      NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      double precision NOT NULL,
    source      text             NOT NULL,
    ingested_at timestamptz      NOT NULL,
    PRIMARY KEY (symbol, timeframe, ts)
);

-- 30-day chunks: a compromise between 1m bars (about 43k rows per symbol per chunk) and daily
-- bars (decades of history without thousands of near-empty chunks).
SELECT create_hypertable(
    'bars', 'ts', chunk_time_interval => INTERVAL '30 days', if_not_exists => TRUE
);

-- Which series exist, maintained on write so list_series never scans the hypertable.
CREATE TABLE IF NOT EXISTS series (
    symbol    text NOT NULL,
    timeframe text NOT NULL,
    PRIMARY KEY (symbol, timeframe)
);
