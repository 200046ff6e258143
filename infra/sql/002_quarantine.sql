-- Rows that failed the data contract, with the reason; re-quarantining the same row is a no-op.
CREATE TABLE IF NOT EXISTS quarantine (
    symbol          text        NOT NULL,
    timeframe       text        NOT NULL,
    ts              timestamptz NULL,
    raw             text        NOT NULL,
    row_fingerprint text        NOT NULL,
    reason          text        NOT NULL,
    detail          text        NOT NULL,
    source          text        NOT NULL,
    run_id          text        NOT NULL,
    quarantined_at  timestamptz NOT NULL,
    PRIMARY KEY (symbol, timeframe, source, row_fingerprint, reason)
);
