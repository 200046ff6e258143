"""MetaTrader 5 bridge: the Broker port over an MT5 terminal, and MT5 bar history.

The terminal's Python module is injected; `load_mt5_module` imports the real one lazily
(`MetaTrader5` on Windows, or an `mt5linux` RPyC client), and `mt5_bridge.simulator` provides a
simulated terminal for tests. See mt5_bridge/README.md.
"""

from mt5_bridge._codes import (
    RetcodeClass,
    RetriesExhaustedError,
    TerminalUnavailableError,
    classify_retcode,
    error_for_result,
)
from mt5_bridge._loader import MT5NotInstalledError, load_mt5_module
from mt5_bridge._parse import RAW_BAR_COLUMNS
from mt5_bridge.broker import (
    MT5_TIMEFRAMES,
    MT5Broker,
    MT5Config,
    MT5ConfigError,
    choose_filling,
    fetch_history,
    open_terminal,
)

__all__ = [
    "MT5_TIMEFRAMES",
    "RAW_BAR_COLUMNS",
    "MT5Broker",
    "MT5Config",
    "MT5ConfigError",
    "MT5NotInstalledError",
    "RetcodeClass",
    "RetriesExhaustedError",
    "TerminalUnavailableError",
    "choose_filling",
    "classify_retcode",
    "error_for_result",
    "fetch_history",
    "load_mt5_module",
    "open_terminal",
]
