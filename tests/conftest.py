"""Session-wide fixtures. A test that needs TimescaleDB asks for `timescale_dsn`."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def timescale_dsn() -> str:
    """DSN of a real TimescaleDB server; under CI a missing server fails instead of skipping."""
    dsn = os.environ.get("CANDLEFLOW_TIMESCALE_DSN")
    if not dsn:
        if os.environ.get("CI") or os.environ.get("CANDLEFLOW_REQUIRE_TIMESCALE"):
            pytest.fail(
                "CI (or `make test`) needs TimescaleDB but CANDLEFLOW_TIMESCALE_DSN is not set: "
                "`make test` starts a server with infra/timescale/start_local.sh; run it that way"
            )
        pytest.skip("no TimescaleDB: set CANDLEFLOW_TIMESCALE_DSN or run `make test`")
    return dsn
