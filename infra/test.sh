#!/usr/bin/env bash
# Run the whole suite against a real TimescaleDB: the one in CANDLEFLOW_TIMESCALE_DSN, or one
# started here by infra/timescale/start_local.sh. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${CANDLEFLOW_TIMESCALE_DSN:-}" ]]; then
  if DSN="$(bash infra/timescale/start_local.sh | tail -n 1)"; then
    export CANDLEFLOW_TIMESCALE_DSN="${DSN}"
  else
    echo "[test] could not start TimescaleDB; tests marked 'timescale' will fail under CI" >&2
  fi
fi
export PYTHONHASHSEED=0
# Under `make test` a missing server fails the timescale tests instead of skipping them.
export CANDLEFLOW_REQUIRE_TIMESCALE=1
exec .venv/bin/pytest "$@"
