#!/usr/bin/env bash
# Benchmarks: each reports ratios against a baseline measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${CANDLEFLOW_TIMESCALE_DSN:-}" ]]; then
  CANDLEFLOW_TIMESCALE_DSN="$(bash infra/timescale/start_local.sh | tail -n 1)"
  export CANDLEFLOW_TIMESCALE_DSN
fi
for b in ingest features backtest latency; do
  echo "== bench.${b}"
  .venv/bin/python -m "bench.${b}"
done
echo "results: ${CANDLEFLOW_HOME:-var}/bench/*.json"
