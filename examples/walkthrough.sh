#!/usr/bin/env bash
# A first day with your own data, timed: two CSVs (a Yahoo-style one and a dd.mm.yyyy one, made
# from the real S&P 500 and NASDAQ Composite bars bundled with arch) → `candleflow ingest` →
# `candleflow research` → the report and `candleflow results`.
#
#   examples/walkthrough.sh [WORK_DIR]          # default: a new temporary directory
#
# Everything goes under WORK_DIR (the CSVs, and CANDLEFLOW_HOME unless it is set). The research
# recipe is the config's (CANDLEFLOW_CONFIG or ./candleflow.toml, else the defaults); the last
# lines print the wall time of each step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
CANDLEFLOW="${CANDLEFLOW:-$ROOT/.venv/bin/candleflow}"
WORK="${1:-$(mktemp -d -t candleflow-walkthrough.XXXXXX)}"
mkdir -p "$WORK"
export CANDLEFLOW_HOME="${CANDLEFLOW_HOME:-$WORK/home}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
TIMES=()

step() {  # step NAME COMMAND...: run it, keep its wall time
  local name="$1" t0 t1
  shift
  echo "== $name: $*" >&2
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  TIMES+=("$(awk -v n="$name" -v a="$t0" -v b="$t1" 'BEGIN { printf "%-36s %6.1f s", n, b - a }')")
}

step "sample CSVs (arch S&P 500, NASDAQ)" "$PY" -m examples.walkthrough_csvs "$WORK"
head -3 "$WORK/spx_yahoo.csv" "$WORK/ixic_dmy.csv" >&2
# Yahoo-style: a Date column, no time zone: daily sessions, no flags needed.
step "ingest SPX500@1d (Yahoo CSV)" \
  "$CANDLEFLOW" ingest --file "$WORK/spx_yahoo.csv" --symbol SPX500 --timeframe 1d
# dd.mm.yyyy: read day-first because a day above 12 occurs in the column (13.01.2013).
step "ingest NASDAQ@1d (dd.mm.yyyy CSV)" \
  "$CANDLEFLOW" ingest --file "$WORK/ixic_dmy.csv" --symbol NASDAQ --timeframe 1d
step "first stored NASDAQ bars" \
  "$CANDLEFLOW" bars --symbol NASDAQ --timeframe 1d --end 2013-01-15
step "research SPX500@1d NASDAQ@1d" \
  "$CANDLEFLOW" research --series SPX500@1d NASDAQ@1d
step "results" "$CANDLEFLOW" results
echo "report: $CANDLEFLOW_HOME/reports/portfolio_1d/report.html" >&2
echo "== wall time per step" >&2
printf '%s\n' "${TIMES[@]}" >&2
