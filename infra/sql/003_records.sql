-- Generic records of the backtest and live planes (orders, fills, positions, equity...).
-- cf_record_tables holds each table's key columns and the kind of each column, so values
-- (timestamps in particular) come back with the type they were written with.
CREATE TABLE IF NOT EXISTS cf_record_tables (
    tbl         text  PRIMARY KEY,
    key_columns jsonb NOT NULL,
    kinds       jsonb NOT NULL
);

CREATE TABLE IF NOT EXISTS cf_records (
    tbl     text  NOT NULL REFERENCES cf_record_tables (tbl),
    key     text  NOT NULL,
    payload jsonb NOT NULL,
    PRIMARY KEY (tbl, key)
);
