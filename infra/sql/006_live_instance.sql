-- Every live table is keyed on the writing worker's strategy instance first (strategy@timeframe,
-- execution.domain.strategy_instance), so two workers (a 1d and a 1h one) on one store never
-- overwrite each other. Rows written before came from the single worker of the time: they get
-- the instance 'default' (infra.stores._records.LEGACY_INSTANCE). A record's key is the JSON
-- array of its key values (infra.stores._records.key_text), so the instance goes in front.
UPDATE cf_records AS r
SET key = '["default",' || substr(r.key, 2),
    payload = jsonb_build_object('instance', 'default') || r.payload
FROM cf_record_tables AS t
WHERE r.tbl = t.tbl
  AND t.tbl IN ('live_orders', 'live_fills', 'live_equity', 'live_positions', 'live_predictions')
  AND NOT t.key_columns @> '["instance"]'::jsonb;

UPDATE cf_record_tables
SET key_columns = '["instance"]'::jsonb || key_columns,
    kinds = '[["instance", "str"]]'::jsonb || kinds
WHERE tbl IN ('live_orders', 'live_fills', 'live_equity', 'live_positions', 'live_predictions')
  AND NOT key_columns @> '["instance"]'::jsonb;
