#!/usr/bin/env bash
# Benchmarks: each reports ratios against a baseline measured in the same run.
# CANDLEFLOW_BENCH_SMOKE=1 runs small sizes (a CI smoke run, about 3 minutes);
# CANDLEFLOW_BENCH_LARGE=1 adds the 1M-bar research row to the growth table.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${CANDLEFLOW_TIMESCALE_DSN:-}" ]]; then
  CANDLEFLOW_TIMESCALE_DSN="$(bash infra/timescale/start_local.sh | tail -n 1)"
  export CANDLEFLOW_TIMESCALE_DSN
fi
declare -A ARGS=()
if [[ "${CANDLEFLOW_BENCH_SMOKE:-}" == "1" ]]; then
  ARGS[ingest]="--bars 100000 --baseline-rows 5000"
  ARGS[features]="--rows 100000 --repeats 2"
  ARGS[backtest]="--rows 100000 --repeat 1"
  ARGS[latency]="--bars 1500 --runs 1x1,10x1"
  ARGS[growth]="--sizes 5000,20000 --series 2 --series-bars 2000"
elif [[ "${CANDLEFLOW_BENCH_LARGE:-}" == "1" ]]; then
  ARGS[growth]="--large"
fi
for b in ingest features backtest latency growth; do
  echo "== bench.${b}"
  # shellcheck disable=SC2086  # the arguments are meant to split
  .venv/bin/python -m "bench.${b}" ${ARGS[$b]:-}
done
echo "results: ${CANDLEFLOW_HOME:-var}/bench/*.json"
