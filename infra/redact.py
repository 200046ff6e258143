"""Secret redaction, in one place: every secret candleflow reads, removed from text and logs.

The secrets are named by environment variable (never written in config): the TimescaleDB DSN's
password, API keys, the MT5 password, alert tokens. `install_redaction()` puts a filter on the
root logger's handlers, so every log line (and logged traceback) of every library is scrubbed;
`redact(text)` scrubs one message, e.g. the CLI's one-line error. A secret appears raw or
percent-encoded (in URLs and DSNs); both forms are replaced by `***`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus, unquote

__all__ = [
    "REDACTED",
    "SECRET_ENV_VARS",
    "RedactingFilter",
    "Redactor",
    "install_redaction",
    "redact",
    "register_secrets",
    "secrets_from_env",
]

REDACTED = "***"

# Variables whose whole value is a secret. Any other variable whose name ends in one of
# _SECRET_SUFFIXES counts too, so a new credential is redacted before anyone lists it here.
SECRET_ENV_VARS = (
    "ALPHAVANTAGE_API_KEY",
    "CANDLEFLOW_MT5_PASSWORD",
    "CANDLEFLOW_TELEGRAM_BOT_TOKEN",
    "CANDLEFLOW_ALERT_WEBHOOK_URL",  # webhook URLs carry their token in the path
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)
_SECRET_SUFFIXES = ("_PASSWORD", "_TOKEN", "_API_KEY", "_SECRET", "_SECRET_KEY")
# Variables holding a DSN or URL whose password part is the secret.
_DSN_ENV_VARS = ("CANDLEFLOW_TIMESCALE_DSN", "MLFLOW_TRACKING_URI", "DATABASE_URL")
# A secret this short would blank out ordinary words; such a value is not redacted as text
# (URL/DSN passwords still are, by position).
_MIN_SECRET_LEN = 4

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)@")
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'[^']*'|\S+)", re.IGNORECASE)


def _dsn_password(dsn: str) -> str | None:
    match = _URL_PASSWORD.search(dsn)
    if match:
        return unquote(match.group("pw"))
    match = _KV_PASSWORD.search(dsn)
    if match:
        return match.group("pw").strip("'")
    return None


def secrets_from_env(environ: Mapping[str, str] | None = None) -> set[str]:
    """Every secret value the product may read from `environ` (default os.environ)."""
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in env.items():
        if not value:
            continue
        if name in SECRET_ENV_VARS or name.endswith(_SECRET_SUFFIXES):
            found.add(value.strip())
    for name in _DSN_ENV_VARS:
        password = _dsn_password(env.get(name) or "")
        if password:
            found.add(password)
    return {s for s in found if s}


def _forms(secrets: Iterable[str]) -> tuple[str, ...]:
    forms: set[str] = set()
    for s in secrets:
        if len(s) >= _MIN_SECRET_LEN:
            forms.update({s, quote(s, safe=""), quote_plus(s)})
    return tuple(sorted(forms, key=len, reverse=True))  # longest first: no partial leftovers


class Redactor:
    """Replaces known secrets, and any password inside a URL or DSN, with `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: tuple[str, ...] = _forms(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._forms = _forms({*self._forms, *secrets})

    def redact(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED + "@", text)
        return _KV_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)


class RedactingFilter(logging.Filter):
    """A handler filter: scrubs the message, the logged traceback and the stack of each record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = self.redactor.redact(text)
        if clean != text:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        return True


_REDACTOR = Redactor()
_FILTER = RedactingFilter(_REDACTOR)
_FACTORY_LOCK = threading.Lock()


def _install_record_factory() -> None:
    """Scrub every record where it is made, so handlers added later (Dagster's own, a
    non-propagating library logger's) never see a secret; the handler filter stays for
    records made before this ran."""
    with _FACTORY_LOCK:
        current = logging.getLogRecordFactory()
        if getattr(current, "_candleflow_redacting", False):
            return

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = current(*args, **kwargs)
            _FILTER.filter(record)
            return record

        factory._candleflow_redacting = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)


def install_redaction(
    environ: Mapping[str, str] | None = None, extra: Iterable[str] = ()
) -> Redactor:
    """Learn the environment's secrets and scrub them from every log record made from now on
    (any logger, any handler, including ones added later) and from every root handler's.

    Calling again adds secrets and any new root handler, never a second filter.
    """
    _REDACTOR.add({*secrets_from_env(environ), *extra})
    _install_record_factory()
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    return _REDACTOR


def register_secrets(secrets: Iterable[str]) -> None:
    """Add secrets learnt at run time (e.g. an API key passed in code, not by environment)."""
    _REDACTOR.add(secrets)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` without any secret known to the process or present in `environ`."""
    clean = _REDACTOR.redact(text)
    extra = _forms(secrets_from_env(environ))
    for form in extra:
        clean = clean.replace(form, REDACTED)
    return clean
