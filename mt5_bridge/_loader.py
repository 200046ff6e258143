"""Lazy import of the real MetaTrader 5 module (Windows package or the mt5linux RPyC client)."""

from __future__ import annotations

import importlib
from typing import Any, Literal

__all__ = ["MT5NotInstalledError", "load_mt5_module"]


class MT5NotInstalledError(ImportError):
    """The MetaTrader 5 Python client the caller asked for is not installed here."""


def load_mt5_module(
    kind: Literal["MetaTrader5", "mt5linux"] = "MetaTrader5",
    *,
    host: str = "localhost",
    port: int = 18812,
) -> Any:
    """Return a module object with the MetaTrader5 API, to inject into MT5Broker/fetch_history.

    kind="MetaTrader5": the official package (Windows only, next to an installed terminal).
    kind="mt5linux": an RPyC client of a `python -m mt5linux` server running the official package
    under Wine; host/port locate that server (18812 is mt5linux's default port).
    """
    if kind == "MetaTrader5":
        try:
            return importlib.import_module("MetaTrader5")
        except ImportError as exc:
            msg = (
                "the MetaTrader5 package is not installed. On Windows, with the MetaTrader 5 "
                "terminal installed: pip install 'candleflow[mt5]'. On Linux, run the terminal "
                "under Wine and use load_mt5_module('mt5linux', host=..., port=...)"
            )
            raise MT5NotInstalledError(msg) from exc
    if kind == "mt5linux":
        try:
            module = importlib.import_module("mt5linux")
        except ImportError as exc:
            msg = (
                "mt5linux is not installed: pip install mt5linux, install Windows Python and "
                "MetaTrader5 under Wine, then start the bridge server with "
                "`python -m mt5linux <path/to/python.exe>`"
            )
            raise MT5NotInstalledError(msg) from exc
        return module.MetaTrader5(host=host, port=port)
    msg = f"unknown MT5 client kind {kind!r}; use 'MetaTrader5' or 'mt5linux'"
    raise ValueError(msg)
