"""Every secret the product reads, as a canary: never in a log line, a traceback or a CLI error."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.redact import REDACTED, Redactor, install_redaction, secrets_from_env
from tests.infra.fixtures_http.server import Reply, running_server, scripted

CANARY = "cAnArY-5eCr3t-9f2b"
BIN = Path(sys.executable).parent / "candleflow"

# One entry per secret the product reads: (variable, value carrying the canary).
SECRETS = [
    ("CANDLEFLOW_TIMESCALE_DSN", f"postgresql://candleflow:{CANARY}@db.example:5432/candleflow"),
    ("ALPHAVANTAGE_API_KEY", CANARY),
    ("CANDLEFLOW_MT5_PASSWORD", CANARY),
    ("CANDLEFLOW_TELEGRAM_BOT_TOKEN", f"123456:{CANARY}"),
    ("CANDLEFLOW_ALERT_WEBHOOK_URL", f"https://hooks.example/services/{CANARY}"),
    ("MLFLOW_TRACKING_PASSWORD", CANARY),
]


@pytest.mark.parametrize(("var", "value"), SECRETS, ids=[v for v, _ in SECRETS])
def test_log_when_line_and_traceback_carry_a_configured_secret_then_redacted(var, value) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        install_redaction({var: value})
        log = logging.getLogger("tests.redact")
        log.error("connect failed: %s (raw %s)", value, CANARY)
        try:
            raise RuntimeError(f"venue said: bad credential {CANARY}")
        except RuntimeError:
            log.exception("with a traceback")
    finally:
        root.removeHandler(handler)

    text = out.getvalue()
    assert "connect failed" in text and "Traceback" in text
    assert CANARY not in text
    assert REDACTED in text


def test_log_when_handler_added_after_install_on_a_non_propagating_logger_then_redacted() -> None:
    install_redaction({"CANDLEFLOW_MT5_PASSWORD": CANARY})
    out = io.StringIO()
    log = logging.getLogger("tests.redact.late")  # like Dagster's own handler: added later
    log.propagate = False
    handler = logging.StreamHandler(out)
    log.addHandler(handler)
    try:
        log.warning("login with %s", CANARY)
    finally:
        log.removeHandler(handler)

    assert "login with" in out.getvalue()
    assert CANARY not in out.getvalue()


def test_redactor_when_secret_is_percent_encoded_in_a_url_then_redacted() -> None:
    redactor = Redactor(["a b/c+d"])

    text = redactor.redact("GET https://x.example/q?apikey=a%20b%2Fc%2Bd and a+b%2Fc%2Bd")

    assert "a%20b" not in text and "a+b%2F" not in text


def test_redactor_when_any_url_holds_a_password_then_redacted_even_if_unknown() -> None:
    text = Redactor().redact("cannot reach postgresql://user:hunter2x@h:5432/db")

    assert "hunter2x" not in text and "postgresql://user:***@h:5432/db" in text


def test_secrets_when_env_names_a_new_credential_by_suffix_then_it_is_a_secret() -> None:
    found = secrets_from_env({"SOME_VENUE_API_KEY": CANARY, "CANDLEFLOW_HOME": "/var/cf"})

    assert found == {CANARY}


def test_cli_when_alphavantage_echoes_the_key_in_a_refusal_then_key_never_printed(
    tmp_path,
) -> None:
    body = {"Information": f"The apikey {CANARY} is invalid or missing. Please claim a key."}
    with running_server() as server:
        server.responder = scripted(Reply(200, body))
        env = {
            **os.environ,
            "CANDLEFLOW_HOME": str(tmp_path),
            "CANDLEFLOW_ENV": "local",
            "ALPHAVANTAGE_API_KEY": CANARY,
            "CANDLEFLOW_ALPHAVANTAGE_URL": server.url,
        }
        out = subprocess.run(
            [str(BIN), "-v", "ingest", "--source", "alphavantage", "--symbol", "IBM",
             "--timeframe", "1d"],
            env=env, capture_output=True, text=True, check=False, timeout=120,
        )

    assert server.requests, "the CLI never reached the local server"
    assert out.returncode == 2
    assert "refused the API key" in out.stderr
    assert CANARY not in out.stderr + out.stdout


def test_cli_when_dsn_password_and_server_unreachable_then_password_never_printed(
    tmp_path,
) -> None:
    env = {
        **os.environ,
        "CANDLEFLOW_HOME": str(tmp_path),
        "CANDLEFLOW_ENV": "timescale",
        "CANDLEFLOW_TIMESCALE_DSN": f"postgresql://candleflow:{CANARY}@127.0.0.1:1/candleflow",
    }
    out = subprocess.run(
        [str(BIN), "-v", "bars", "--symbol", "SPX", "--timeframe", "1d"],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )

    assert out.returncode == 2, out.stderr
    assert "cannot connect to TimescaleDB" in out.stderr
    assert CANARY not in out.stderr + out.stdout
